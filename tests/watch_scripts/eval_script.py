"""Accelerate + torchao FP8 (emulated) on the tiny Llama: two training steps, then an evaluation pass
(`model.eval()` under `torch.no_grad()`), as a training script with a validation loop does. Prints "EVAL <loss>"."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.utils import AORecipeKwargs
from tiny import build_model, token_rows
from torchao.float8 import Float8LinearConfig


def main() -> None:
    accelerator = Accelerator(mixed_precision="fp8",
                              kwargs_handlers=[AORecipeKwargs(config=Float8LinearConfig(emulate=True))])
    model = build_model(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    rows = token_rows(seed=0)
    model.train()
    for step in range(2):
        batch = rows[step * 4:(step + 1) * 4]
        accelerator.backward(model(input_ids=batch, labels=batch).loss)
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        batch = rows[8:12]
        print(f"EVAL {model(input_ids=batch, labels=batch).loss.item()!r}", flush=True)


if __name__ == "__main__":
    main()
