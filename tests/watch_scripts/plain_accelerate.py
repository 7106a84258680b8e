"""A plain Accelerate loop on the tiny Llama with no FP8 recipe class at all, so it runs in every Accelerate
generation (accelerate <= 1.3 has no AORecipeKwargs). Mixed precision comes from ACCELERATE_MIXED_PRECISION."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from tiny import build_model, token_rows


def main() -> None:
    accelerator = Accelerator()
    model = build_model(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    rows = token_rows(seed=0)
    for step in range(3):
        batch = rows[step * 4:(step + 1) * 4].to(accelerator.device)
        loss = model(input_ids=batch, labels=batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        print(f"LOSS {step} {loss.item()!r}", flush=True)


if __name__ == "__main__":
    main()
