"""The tiny Llama trained 8 steps with Accelerate, in bf16 or in torchao FP8 (emulated on CPU), at a given
learning rate: `python baseline_script.py bf16|fp8 LR` (`watch --baseline` compares an FP8 run with the bf16 one)."""

from __future__ import annotations

import sys

from accelerate import Accelerator
from accelerate.utils import AORecipeKwargs
from tiny import build_model, train
from torchao.float8 import Float8LinearConfig


def main(precision: str, lr: str) -> None:
    handlers = [AORecipeKwargs(config=Float8LinearConfig(emulate=True))] if precision == "fp8" else []
    accelerator = Accelerator(mixed_precision=precision, kwargs_handlers=handlers)
    train(accelerator, build_model(), steps=8, lr=float(lr))


if __name__ == "__main__":
    main(*sys.argv[1:])
