"""Transformer Engine recipes and autocast, written against TE's public API (CUDA only; never runs on CPU).

Recipe presence is checked with hasattr because it varies by TE release (as read by the static TE lab, lab/te:
DelayedScaling always, MXFP8 from 2.1, current scaling 2.2, block scaling 2.3, NVFP4 2.8); `autocast` exists from
2.9 (`fp8_autocast` then warns) and whichever exists is used. tests/test_te_releases.py holds every TE name and
keyword used here against each release the `te` extra allows.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager
from typing import Any

from fp8doctor.knowledge.capability import RECIPE_CLASSES

# Set in a run's env: build accelerate <= 1.3's FP8RecipeKwargs(backend="TE") where TE is not installed, to reach
# Accelerate's own mixed-precision check on a machine without TE (the buggy repro rows only).
UNCHECKED_ENV = "FP8DOCTOR_RECIPE_UNCHECKED"


def te_recipe(recipe: str) -> Any:
    from transformer_engine.common import recipe as te_recipes

    cls_name, kwargs = RECIPE_CLASSES[recipe]
    if not hasattr(te_recipes, cls_name):
        raise RuntimeError(f"this Transformer Engine has no transformer_engine.common.recipe.{cls_name}")
    kwargs = dict(kwargs)
    if "fp8_format" in kwargs:
        kwargs["fp8_format"] = getattr(te_recipes.Format, kwargs["fp8_format"])
    return getattr(te_recipes, cls_name)(**kwargs)


def autocast_name() -> str:
    import transformer_engine.pytorch as te

    return "autocast" if hasattr(te, "autocast") else "fp8_autocast"


def te_autocast(recipe: str) -> AbstractContextManager[Any]:
    import transformer_engine.pytorch as te

    if hasattr(te, "autocast"):
        return te.autocast(enabled=True, recipe=te_recipe(recipe))
    return te.fp8_autocast(enabled=True, fp8_recipe=te_recipe(recipe))


def handler_kwargs(recipe: str) -> dict[str, Any]:
    if recipe == "mxfp8":
        return {"use_mxfp8_block_scaling": True}
    return {"fp8_format": RECIPE_CLASSES[recipe][1]["fp8_format"]}


def recipe_handler(recipe: str) -> Any:
    """Accelerate's TE recipe handler: TERecipeKwargs, or FP8RecipeKwargs(backend="TE") in accelerate <= 1.3 (its
    only recipe class). With UNCHECKED_ENV=1 the old class is built without its TE-availability check."""
    import accelerate.utils

    if hasattr(accelerate.utils, "TERecipeKwargs"):
        return accelerate.utils.TERecipeKwargs(**handler_kwargs(recipe))
    kwargs = {"backend": "TE", **handler_kwargs(recipe)}
    if os.environ.get(UNCHECKED_ENV) != "1":
        return accelerate.utils.FP8RecipeKwargs(**kwargs)
    return _without_availability_check(accelerate.utils.FP8RecipeKwargs, kwargs)


def _without_availability_check(cls: Any, kwargs: dict[str, Any]) -> Any:
    """The real handler class, with the "is TE installed" check of its __post_init__ answering yes during the call;
    every other check and default of the class runs as released."""
    module = sys.modules[cls.__module__]
    original = module.is_transformer_engine_available
    module.is_transformer_engine_available = lambda: True
    try:
        return cls(**kwargs)
    finally:
        module.is_transformer_engine_available = original


def accelerate_env(recipe: str) -> dict[str, str]:
    """What `accelerate launch` with `fp8_config: {backend: TE, ...}` exports for this recipe."""
    env = {"ACCELERATE_FP8_BACKEND": "TE"}
    if recipe == "mxfp8":
        env["ACCELERATE_FP8_USE_MXFP8_BLOCK_SCALING"] = "true"
    else:
        env["ACCELERATE_FP8_FORMAT"] = RECIPE_CLASSES[recipe][1]["fp8_format"]
    return env


def convert_native(model: Any) -> Any:
    """Swap nn.Linear/nn.LayerNorm for TE modules the way Accelerate does (its own converter, weights kept)."""
    import torch
    from accelerate.utils.transformer_engine import convert_model

    with torch.no_grad():
        convert_model(model)
    return model
