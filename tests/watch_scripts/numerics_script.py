"""Accelerate + torchao FP8 (emulated) on a five-Linear model with a planted underflow: the input of layer "3"
is one large feature (1e3, which layer "3" ignores: its weight column is zero and it has no bias) and 63 features
scaled by 1e-6, so the tensorwise e4m3 cast flushes almost all of that input to zero and the layer's FP8 output
loses its signal. Accelerate converts "1", "3" and "4" (it keeps the first and the last Linear).
With the argument `te`: the same through Accelerate's Transformer Engine backend on the GPU (it converts every
Linear). Prints "LOSS <step> <value>"."""

from __future__ import annotations

import sys

import torch
from accelerate import Accelerator


class Squash(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full_like(x[..., :1], 1e3), x[..., 1:] * 1e-6], dim=-1)


def main() -> None:
    torch.manual_seed(0)
    if sys.argv[1:] == ["te"]:
        from accelerate.utils import TERecipeKwargs

        handler = TERecipeKwargs()
    else:
        from accelerate.utils import AORecipeKwargs
        from torchao.float8 import Float8LinearConfig

        handler = AORecipeKwargs(config=Float8LinearConfig(emulate=True))
    accelerator = Accelerator(mixed_precision="fp8", kwargs_handlers=[handler])
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64), Squash(),
                                torch.nn.Linear(64, 64, bias=False),
                                torch.nn.Linear(64, 64), torch.nn.Linear(64, 32))
    with torch.no_grad():
        model[3].weight[:, 0] = 0.0
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)
    for step in range(20):
        x = torch.randn(32, 64, device=accelerator.device)
        loss = model(x).pow(2).mean()
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        print(f"LOSS {step} {loss.item()!r}", flush=True)


if __name__ == "__main__":
    main()
