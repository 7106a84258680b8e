"""`fsdp2` and `deepspeed`: two ranks, each `Accelerator(..., fsdp_plugin=FSDP2)` or `(..., deepspeed_plugin=
ZeRO-2)` with the FP8 recipe, model and optimizer prepared together (runs/entries/plugins.py builds them).
Started like multiproc: torchrun with ACCELERATE_USE_CPU=true on CPU (gloo), `accelerate launch --multi_gpu`
on GPUs."""

from __future__ import annotations

from fp8doctor.runs.entries.common import Context
from fp8doctor.runs.entries.multi_process import launch_ranks

NAMES = ("fsdp2", "deepspeed")
LAUNCHES_PROCESSES = True  # the worker skips importing torch; the ranks do it


def run(ctx: Context) -> None:
    launch_ranks(ctx, ctx.spec.entry)
