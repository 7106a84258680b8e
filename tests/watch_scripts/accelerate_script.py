"""Plain Accelerate training loop on the tiny Llama with a torchao FP8 recipe (emulated, so it runs on CPU).

Mixed precision comes from the launcher (ACCELERATE_MIXED_PRECISION / `accelerate launch --mixed_precision`),
so it runs unchanged under `accelerate launch` and `torchrun`; the recipe is passed only when that is fp8 (as
scripts that switch precision by environment do), so a node exporting ACCELERATE_MIXED_PRECISION=bf16 trains on
in bf16. Prints "LOSS <rank> <step> <repr>" per step.
"""

from __future__ import annotations

import os

from accelerate import Accelerator
from accelerate.utils import AORecipeKwargs
from tiny import build_model, train
from torchao.float8 import Float8LinearConfig


def main() -> None:
    fp8 = os.environ.get("ACCELERATE_MIXED_PRECISION") == "fp8"
    accelerator = Accelerator(kwargs_handlers=[AORecipeKwargs(config=Float8LinearConfig(emulate=True))] if fp8 else [])
    train(accelerator, build_model(seed=0), steps=4, rows_seed=accelerator.process_index)
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()
