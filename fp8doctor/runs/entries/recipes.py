"""The FP8 recipe handler an entry passes to `Accelerator(kwargs_handlers=[...])` for a spec."""

from __future__ import annotations

from typing import Any

from fp8doctor.runs.entries.common import Context


def recipe_handler(ctx: Context) -> Any:
    spec = ctx.spec
    if spec.backend == "torchao":
        from fp8doctor.runs.backends.torchao import recipe_handler as ao_handler

        return ao_handler(spec.recipe, ctx.emulate)
    if spec.backend == "te":
        import os

        from fp8doctor.runs.backends.te import UNCHECKED_ENV
        from fp8doctor.runs.backends.te import recipe_handler as te_handler

        handler = te_handler(spec.recipe)
        if os.environ.get(UNCHECKED_ENV) == "1" and type(handler).__name__ == "FP8RecipeKwargs":
            ctx.note(f"{type(handler).__name__}(backend='TE') was built with Accelerate's Transformer Engine "
                     "availability check bypassed (TE is not installed here); every other check is Accelerate's own")
        return handler
    return None


def backend_env(ctx: Context) -> dict[str, str]:
    """The ACCELERATE_FP8_* variables a user sets (or `accelerate launch` exports) to pick the backend."""
    if ctx.spec.backend == "torchao":
        return {"ACCELERATE_FP8_BACKEND": "AO"}
    if ctx.spec.backend == "te":
        from fp8doctor.runs.backends.te import accelerate_env

        return accelerate_env(ctx.spec.recipe)
    return {}
