"""Entries buggy_patch_if_missing and buggy_patch_append: the reference report's monkey-patch of
`Accelerator.__init__`, reproduced faithfully.

LLaMA-Factory's trainer patched `Accelerator.__init__` to inject an FP8 recipe handler while the config said
`bf16: true` (so TrainingArguments -> `Accelerator(mixed_precision="bf16", ...)`). Two forms:

  if_missing: inject the recipe only when `kwargs_handlers` is absent. transformers 5.x always passes
              `kwargs_handlers=[DistributedDataParallelKwargs(...)]`, so nothing is injected and the run
              silently trains in bf16; on transformers 4.x the recipe is injected and Accelerate raises.
  append:     always append the recipe: Accelerate raises the ValueError the report shows.
"""

from __future__ import annotations

import os
from typing import Any

from fp8doctor.runs.backends import recipe_handler
from fp8doctor.runs.backends.te import UNCHECKED_ENV
from fp8doctor.runs.entries.common import Context
from fp8doctor.runs.entries.trainer import run_trainer

# The RunSpec entry name of each form.
FORMS = {"buggy_patch_if_missing": "if_missing", "buggy_patch_append": "append"}
NAMES = tuple(FORMS)
LAUNCHES_PROCESSES = False


def _handler(ctx: Context) -> Any:
    handler = recipe_handler(ctx.spec.backend, ctx.spec.recipe, ctx.emulate)
    if os.environ.get(UNCHECKED_ENV) == "1" and type(handler).__name__ == "FP8RecipeKwargs":
        ctx.note("FP8RecipeKwargs(backend='TE') was built with Accelerate's Transformer Engine availability check "
                 "bypassed (TE is not installed here); every other check is Accelerate's own")
    return handler


def install_patch(ctx: Context, form: str) -> dict[str, Any]:
    from accelerate import Accelerator

    record: dict[str, Any] = {"form": form, "calls": 0, "injected": 0, "kwargs_handlers_seen": []}
    ctx.result["patch"] = record
    original_accelerator_init = Accelerator.__init__

    def patched_accelerator_init(self: Any, *args: Any, **accelerator_kwargs: Any) -> None:
        record["calls"] += 1
        record["kwargs_handlers_seen"] = [type(h).__name__ for h in accelerator_kwargs.get("kwargs_handlers") or []]
        record["mixed_precision_arg"] = accelerator_kwargs.get("mixed_precision")
        if form == "if_missing":
            if "kwargs_handlers" not in accelerator_kwargs:
                accelerator_kwargs["kwargs_handlers"] = [_handler(ctx)]
                record["injected"] += 1
        else:
            accelerator_kwargs["kwargs_handlers"] = [*(accelerator_kwargs.get("kwargs_handlers") or []), _handler(ctx)]
            record["injected"] += 1
        return original_accelerator_init(self, *args, **accelerator_kwargs)

    Accelerator.__init__ = patched_accelerator_init  # type: ignore[method-assign]
    return record


def run(ctx: Context) -> None:
    """`TrainingArguments(bf16=spec.bf16)` (the report: `bf16: true`) with the patch installed. Unless the spec's
    env says otherwise, Accelerate is "already configured" with bf16, as the report's log shows."""
    env = {"ACCELERATE_MIXED_PRECISION": "bf16"} if ctx.spec.bf16 else {}
    env = {k: v for k, v in env.items() if k not in ctx.spec.env}
    form = FORMS[ctx.spec.entry]
    run_trainer(ctx, bf16=ctx.spec.bf16, env=env, before_trainer=lambda: install_patch(ctx, form))
