"""A plain Accelerate loop on the tiny Llama with no FP8 recipe class at all, so it runs in every Accelerate
generation (accelerate <= 1.3 has no AORecipeKwargs). Mixed precision comes from ACCELERATE_MIXED_PRECISION."""

from __future__ import annotations

from accelerate import Accelerator
from tiny import build_model, train


def main() -> None:
    accelerator = Accelerator()
    train(accelerator, build_model(seed=0), steps=3, rank_in_line=False)


if __name__ == "__main__":
    main()
