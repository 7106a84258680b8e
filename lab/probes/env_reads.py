"""Which ACCELERATE_FP8_* variables does this release read? Every variable is set to a distinctive value; each
recipe class is then built and its fields compared with the same class built without the variables.

TE and MS-AMP are not installable here, so a class whose __post_init__ demands them is also built `unchecked`
(dataclass defaults, then __post_init__ called and its exception recorded): the fields it set before raising
still show what it reads. The Accelerator case shows what reaches the torchao handler Accelerate builds
itself, and the Float8Linear config that prepare() applied (pad_inner_dim and enable_fsdp_float8_all_gather
are set to non-defaults).
"""

from __future__ import annotations

import dataclasses

import torch
from _common import clean_environ, dataclass_fields, describe_exception, main, tiny_model

FLOAT8_CONFIG_FIELDS = ("pad_inner_dim", "enable_fsdp_float8_all_gather", "emulate")

VALUES = {
    "ACCELERATE_FP8_FORMAT": "E5M2",
    "ACCELERATE_FP8_AMAX_HISTORY_LEN": "77",
    "ACCELERATE_FP8_AMAX_COMPUTE_ALGO": "most_recent",
    "ACCELERATE_FP8_MARGIN": "3",
    "ACCELERATE_FP8_INTERVAL": "5",
    "ACCELERATE_FP8_OVERRIDE_FPROP": "true",
    "ACCELERATE_FP8_OVERRIDE_DGRAD": "true",
    "ACCELERATE_FP8_OVERRIDE_WGRAD": "true",
    "ACCELERATE_FP8_OPT_LEVEL": "O1",
    "ACCELERATE_FP8_USE_AUTOCAST_DURING_EVAL": "true",
    "ACCELERATE_FP8_USE_MXFP8_BLOCK_SCALING": "true",
    "ACCELERATE_FP8_PAD_INNER_DIM": "true",
    "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": "true",
    "ACCELERATE_FP8_RECIPE_FORMAT": "E5M2",
}
CLASSES = ("FP8RecipeKwargs", "TERecipeKwargs", "MSAMPRecipeKwargs", "AORecipeKwargs")


def _build(cls, unchecked: bool) -> dict:
    if not unchecked:
        try:
            return {"fields": dataclass_fields(cls())}
        except Exception as exc:  # noqa: BLE001
            return describe_exception(exc)
    obj = cls.__new__(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        setattr(obj, f.name, default)
    result: dict = {}
    post = getattr(obj, "__post_init__", None)
    if post is not None:
        try:
            post()
        except Exception as exc:  # noqa: BLE001
            result["post_init"] = describe_exception(exc)
    result["fields"] = dataclass_fields(obj)
    return result


def run_case(case: dict) -> dict:
    import accelerate.utils as au

    if case["what"] == "Accelerator":
        from accelerate import Accelerator

        try:
            accelerator = Accelerator(mixed_precision="fp8")
        except Exception as exc:  # noqa: BLE001
            return {**describe_exception(exc), "stage": "init"}
        held = {}
        for attr in ("ao_recipe_handler", "te_recipe_handler", "msamp_recipe_handler", "fp8_recipe_handler"):
            handler = getattr(accelerator, attr, None)
            if handler is not None:
                held[attr] = {"class": type(handler).__name__, "fields": dataclass_fields(handler)}
        model = tiny_model()
        try:
            model, _ = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
        except Exception as exc:  # noqa: BLE001
            return {**describe_exception(exc), "stage": "prepare", "handlers_held": held}
        converted = [m for m in model.modules() if type(m).__name__.startswith("Float8")]
        config = getattr(converted[0], "config", None) if converted else None
        seen = {name: repr(getattr(config, name, "<absent>")) for name in FLOAT8_CONFIG_FIELDS} if config else None
        return {"outcome": "ok", "handlers_held": held, "float8_layers": len(converted),
                "float8_config_after_prepare": seen}
    cls = getattr(au, case["what"], None)
    if cls is None:
        return {"outcome": "absent"}
    unchecked = case["unchecked"]
    with_env = _build(cls, unchecked)
    clean_environ()
    without = _build(cls, unchecked)
    if "fields" not in with_env or "fields" not in without:
        return {"outcome": "raised", "with_env": with_env, "without_env": without}
    changed = {k: {"default": without["fields"].get(k), "with_env": v} for k, v in with_env["fields"].items()
               if without["fields"].get(k) != v}
    return {"outcome": "ok", "fields_changed_by_env": changed, "post_init": with_env.get("post_init")}


def cases() -> list[dict]:
    out = [{"what": name, "unchecked": unchecked, "env": VALUES} for name in CLASSES for unchecked in (False, True)]
    out.append({"what": "Accelerator", "env": {**VALUES, "ACCELERATE_FP8_BACKEND": "AO"}})
    return out


if __name__ == "__main__":
    main(cases(), run_case, ("accelerate", "accelerate.utils", "torchao.float8"))
