"""FP8 backends for the run engine: torchao (runs on CPU with emulate=True), Transformer Engine (CUDA only), and
the bf16 baseline ("none"). Each module builds recipes from a RunSpec's recipe name; imports stay lazy."""

from __future__ import annotations

from typing import Any

# Which fp8doctor.observe eligibility rule matches the backend's conversion filter.
ELIGIBILITY_RULE = {"torchao": "accelerate-ao", "te": "accelerate-te", "none": "accelerate-ao"}


def eligibility_rule(backend: str) -> str:
    return ELIGIBILITY_RULE[backend]


def recipe_handler(backend: str, recipe: str, emulate: bool = False) -> Any:
    """The FP8 recipe handler an entry passes to `Accelerator(kwargs_handlers=[...])`; None for the baseline."""
    if backend == "torchao":
        from fp8doctor.runs.backends.torchao import recipe_handler as ao_handler

        return ao_handler(recipe, emulate)
    if backend == "te":
        from fp8doctor.runs.backends.te import recipe_handler as te_handler

        return te_handler(recipe)
    return None


def needs_recipe_handler(backend: str, recipe: str) -> bool:
    """Whether an entry that leaves FP8 to Accelerate's own settings (the Trainer's environment, an `accelerate
    launch` config) must still pass the recipe as a handler: a torchao recipe other than the default tensorwise,
    which no variable or config key selects. The handler carries Float8LinearConfig.from_recipe_name(recipe)."""
    return backend == "torchao" and recipe != "tensorwise"


def backend_env(backend: str, recipe: str) -> dict[str, str]:
    """The ACCELERATE_FP8_* variables a user sets (or `accelerate launch` exports) to pick the backend."""
    if backend == "torchao":
        return {"ACCELERATE_FP8_BACKEND": "AO"}
    if backend == "te":
        from fp8doctor.runs.backends.te import accelerate_env

        return accelerate_env(recipe)
    return {}
