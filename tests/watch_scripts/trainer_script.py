"""HF Trainer on the tiny Llama, in the configurations of the reference report.

    python trainer_script.py buggy   # bf16=True; run with ACCELERATE_MIXED_PRECISION=fp8: bf16 silently wins
    python trainer_script.py fixed   # bf16=False + ACCELERATE_MIXED_PRECISION=fp8 + torchao recipe: FP8 trains
    python trainer_script.py patch   # the report's monkey-patch: a recipe appended while bf16 -> ValueError

Prints its own per-step losses ("LOSS <step> <repr>") and a parameter checksum, so runs can be compared exactly.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
from accelerate import Accelerator
from accelerate.utils import AORecipeKwargs
from tiny import build_model, token_rows
from torchao.float8 import Float8LinearConfig
from transformers import Trainer, TrainingArguments


def ao_recipe() -> AORecipeKwargs:
    # emulate=True: real FP8 casts and scaling with a plain matmul, so it runs on CPU.
    return AORecipeKwargs(config=Float8LinearConfig(emulate=True))


class Rows(torch.utils.data.Dataset):
    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[i], "labels": self.rows[i]}


class PrintingTrainer(Trainer):
    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        print(f"LOSS {self.state.global_step} {loss.item()!r}", flush=True)
        return loss


class FP8Trainer(PrintingTrainer):
    """The fix: let the Trainer's Accelerator get the torchao recipe next to its DDP handler."""

    def _build_accelerator_args(self, **kwargs):
        args = super()._build_accelerator_args(**kwargs)
        args["kwargs_handlers"] = [*args.get("kwargs_handlers", []), ao_recipe()]
        return args


def patch_like_the_report() -> None:
    original = Accelerator.__init__

    def patched_accelerator_init(self, *args, **kwargs):
        kwargs["kwargs_handlers"] = [*kwargs.get("kwargs_handlers", []), ao_recipe()]
        return original(self, *args, **kwargs)

    Accelerator.__init__ = patched_accelerator_init


def main(mode: str) -> None:
    model = build_model(seed=0)
    out = tempfile.mkdtemp(prefix="fp8doctor-watch-test-")
    args = TrainingArguments(
        output_dir=out, max_steps=5, per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1,
        bf16=(mode != "fixed"), use_cpu=True, report_to=[], save_strategy="no", seed=0, data_seed=0,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    if mode == "patch":
        patch_like_the_report()
    cls = FP8Trainer if mode == "fixed" else PrintingTrainer
    trainer = cls(model=model, args=args, train_dataset=Rows(token_rows(seed=0)))
    trainer.train()
    checksum = sum(p.detach().double().sum().item() for p in trainer.model.parameters())
    print(f"PARAMSUM {checksum!r}", flush=True)
    print(f"MIXED_PRECISION {trainer.accelerator.mixed_precision} env={os.environ.get('ACCELERATE_MIXED_PRECISION')}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fixed")
