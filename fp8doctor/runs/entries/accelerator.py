"""`Accelerator(mixed_precision=..., kwargs_handlers=[recipe])`: the documented way to train FP8 with Accelerate."""

from __future__ import annotations

from fp8doctor.runs.backends import recipe_handler
from fp8doctor.runs.entries.common import Context, accelerate_training

NAMES = ("accelerator",)
LAUNCHES_PROCESSES = False


def run(ctx: Context) -> None:
    from accelerate import Accelerator

    handler = recipe_handler(ctx.spec.backend, ctx.spec.recipe, ctx.emulate)
    handlers = [handler] if handler is not None else []
    mp = ctx.spec.mixed_precision if ctx.spec.backend != "none" else (ctx.spec.mixed_precision or "bf16")
    cpu = ctx.device == "cpu"
    accelerate_training(ctx, lambda: Accelerator(mixed_precision=mp, kwargs_handlers=handlers, cpu=cpu))
