"""The bf16 baseline: no FP8 backend, bf16 autocast (what FP8 runs are compared against)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any


def autocast(device: str) -> AbstractContextManager[Any]:
    import torch

    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
