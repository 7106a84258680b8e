"""Does a model that Accelerate prepared for FP8 still compute in FP8 in evaluation? For the torchao path:
`Accelerator(mixed_precision='fp8', kwargs_handlers=[AORecipeKwargs(Float8LinearConfig(emulate=True))])`, then
`prepare(model, optimizer)`, then forward passes with `model.train()` and with `model.eval()` under
`torch.no_grad()`. Per mode: how many Float8Linear forwards ran, and the largest difference between each one's
output and the high-precision `F.linear` of the same input and weight (FP8 casting shows as a non-zero difference).
"""

from __future__ import annotations

import torch
from _common import describe_exception, main, state_facts, tiny_model

CASES = [{"mode": "train-then-eval"}]


def observe(case: dict) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import AORecipeKwargs
    from torchao.float8 import Float8LinearConfig

    model = tiny_model()
    try:
        accelerator = Accelerator(mixed_precision="fp8",
                                  kwargs_handlers=[AORecipeKwargs(config=Float8LinearConfig(emulate=True))])
        model, _ = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    except Exception as exc:  # noqa: BLE001 - a release that raises is the observation
        return describe_exception(exc)
    seen = {"forwards": 0, "max_abs_diff": 0.0}

    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        with torch.no_grad():
            ref = torch.nn.functional.linear(inputs[0].float(), module.weight.float(),
                                             None if module.bias is None else module.bias.float())
            seen["max_abs_diff"] = max(seen["max_abs_diff"], float((output.float() - ref).abs().max()))
        seen["forwards"] += 1

    for m in model.modules():
        if type(m).__name__ == "Float8Linear":
            m.register_forward_hook(hook)
    x = torch.randn(8, 32)
    out = {"outcome": "ok", **state_facts(accelerator)}
    for mode in ("train", "eval"):
        seen.update(forwards=0, max_abs_diff=0.0)
        model.train(mode == "train")
        with torch.set_grad_enabled(mode == "train"):
            model(x)
        out[mode] = {"float8_forwards": seen["forwards"], "fp8_changed_output": seen["max_abs_diff"] > 0}
    return out


if __name__ == "__main__":
    main(CASES, observe, preload_modules=("torch",))
