"""Which Linear layers Accelerate's torchao path converts: `Accelerator(mixed_precision='fp8',
kwargs_handlers=[AORecipeKwargs(Float8LinearConfig(emulate=True))]).prepare(model, optimizer)` on models whose
Linear layers have known names and shapes, recording every Linear by name with its shape and whether it became FP8.

Cases: a Sequential of five Linear layers with one inner layer not divisible by 16 (the first/last filter and
the divisibility filter at once), and a tiny Qwen2 (transformers' own class) with intermediate_size 120 (the MLP's
gate/up/down projections not divisible by 16) and untied lm_head.
"""

from __future__ import annotations

from typing import Any

import torch
from _common import describe_exception, main, state_facts

CASES = [{"model": "sequential-odd-inner"}, {"model": "qwen2-intermediate-120"}]


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "sequential-odd-inner":
        dims = [32, 64, 48, 40, 64, 32]  # the third Linear is 48 -> 40: 40 is not a multiple of 16
        return torch.nn.Sequential(*[torch.nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False)])
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("qwen2", hidden_size=64, intermediate_size=120, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                               tie_word_embeddings=False)
    return AutoModelForCausalLM.from_config(cfg)


def linears(model: torch.nn.Module) -> list[dict[str, Any]]:
    out = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            out.append({"name": name, "in": module.in_features, "out": module.out_features,
                        "fp8": type(module).__name__.startswith("Float8")})
    return out


def observe(case: dict) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import AORecipeKwargs
    from torchao.float8 import Float8LinearConfig

    model = build(case["model"])
    before = linears(model)
    try:
        accelerator = Accelerator(mixed_precision="fp8",
                                  kwargs_handlers=[AORecipeKwargs(config=Float8LinearConfig(emulate=True))])
        model, _ = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    except Exception as exc:  # noqa: BLE001 - a release that raises is the observation
        return {**describe_exception(exc), "linears": before}
    return {"outcome": "ok", **state_facts(accelerator), "linears": linears(model)}


if __name__ == "__main__":
    main(CASES, observe, preload_modules=("torch",))
