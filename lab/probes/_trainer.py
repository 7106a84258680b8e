"""Shared by the transformers probes: a tiny Trainer-ready model and dataset, and a spy on Accelerator.__init__.

The spy wraps the real __init__ and records what the caller passed (observation, not mocking): the call goes on
unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from _common import tiny_model

STEPS = 2


class TinyRegressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_model()

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        out = self.net(x)
        loss = torch.nn.functional.mse_loss(out, labels) if labels is not None else None
        return {"loss": loss, "logits": out}


def tiny_dataset(n: int = 16) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(32, generator=g), "labels": torch.randn(32, generator=g)} for _ in range(n)]


def training_args(bf16: bool, **extra: Any):
    from transformers import TrainingArguments

    # use_cpu: bf16 on a machine without a GPU needs it; the lab has none.
    return TrainingArguments(output_dir=os.path.join(os.getcwd(), "out"), bf16=bf16, report_to="none",
                             max_steps=STEPS, per_device_train_batch_size=4, save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, use_cpu=True, **extra)


def describe_kwargs(args: tuple, kwargs: dict) -> dict:
    handlers = kwargs.get("kwargs_handlers")
    return {
        "positional": len(args),
        "keys": sorted(kwargs),
        "mixed_precision": kwargs.get("mixed_precision", "<not passed>"),
        "kwargs_handlers": ("<not passed>" if "kwargs_handlers" not in kwargs else
                            None if handlers is None else [type(h).__name__ for h in handlers]),
    }


def spy_accelerator_init(record: list, patch=None) -> None:
    """Record each Accelerator(...) call; `patch(kwargs)` (optional) edits the kwargs first, as a user patch would."""
    import accelerate

    original = accelerate.Accelerator.__init__

    def init(self, *args, **kwargs):
        entry = {"received": describe_kwargs(args, kwargs)}
        if patch is not None:
            patch(kwargs)
            entry["passed_on"] = describe_kwargs(args, kwargs)
        record.append(entry)
        return original(self, *args, **kwargs)

    accelerate.Accelerator.__init__ = init
