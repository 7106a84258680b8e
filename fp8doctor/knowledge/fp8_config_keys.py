"""What `accelerate launch` does with the `fp8_config` keys of an Accelerate config file, per release (pure, on
version strings): the ACCELERATE_FP8_* variables the launched script sees, and the recipe-class fields each one
reaches. Held against the lab's `fp8_config_keys` probe (lab/observations/*.json,
tests/test_generation_predictions.py); where they disagree, this module changes.

Observed: <= 1.3 the launcher never copies `fp8_config` into its arguments (every key is ignored), 1.4 crashes on its
own default for override_linear_precision, 1.5-1.8 export that default as bools, which subprocess refuses (no fp8
launch starts), from 1.9 each key `k` becomes ACCELERATE_FP8_<K> (`fp8_k` keys keep their name) and only
the variables a recipe class reads matter. A key is read when it reaches a field of some recipe class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fp8doctor.knowledge.predict import AO_ENV_FIELDS, AO_READS_ENV_FROM, recipe_classes
from fp8doctor.knowledge.predict import LAUNCH_FP8_CONFIG_TYPEERROR as SPAWN_BOOL
from fp8doctor.knowledge.predict import LAUNCH_NO_FP8_OLD as NO_FP8_LIBRARY_OLD
from fp8doctor.knowledge.versions import release

LAUNCH_STRIP_CRASH = "'tuple' object has no attribute 'strip'"
PREFIX = "ACCELERATE_FP8_"
OVERRIDE_KEY = "override_linear_precision"
OVERRIDE_VARS = ("OVERRIDE_FPROP", "OVERRIDE_DGRAD", "OVERRIDE_WGRAD")

# variable (after ACCELERATE_FP8_) -> the field it sets, per family of recipe classes
TE_VARS = {"USE_AUTOCAST_DURING_EVAL": "use_autocast_during_eval", "MARGIN": "margin", "INTERVAL": "interval",
           "FORMAT": "fp8_format", "AMAX_COMPUTE_ALGO": "amax_compute_algo", "AMAX_HISTORY_LEN": "amax_history_len",
           **{name: OVERRIDE_KEY for name in OVERRIDE_VARS}}
MXFP8_VAR = {"USE_MXFP8_BLOCK_SCALING": "use_mxfp8_block_scaling"}
MXFP8_FROM = (1, 11)  # TERecipeKwargs.use_mxfp8_block_scaling (recipe_fields case of 1.11 onwards)
MSAMP_VARS = {"OPT_LEVEL": "opt_level"}
AO_VARS = {var.removeprefix("ACCELERATE_FP8_"): field for var, field in AO_ENV_FIELDS.items()}

TE_FIELDS = ("use_autocast_during_eval", "margin", "interval", "fp8_format", "amax_history_len", "amax_compute_algo",
             OVERRIDE_KEY)
AO_FIELDS = ("config", "module_filter_func")


def recipe_fields(accelerate: str | None) -> dict[str, set[str]] | None:
    """The dataclass fields of each recipe class the release has (None: not a version)."""
    r = release(accelerate)
    if r is None:
        return None
    te = set(TE_FIELDS) | (set(MXFP8_VAR.values()) if r >= MXFP8_FROM else set())
    ao = set(AO_FIELDS) | (set(AO_VARS.values()) if r >= AO_READS_ENV_FROM else set())
    table = {"FP8RecipeKwargs": te | {"backend", "opt_level"}, "TERecipeKwargs": te, "MSAMPRecipeKwargs": {"opt_level"},
             "AORecipeKwargs": ao}
    return {name: table[name] for name in recipe_classes(accelerate)}


def variable_of(key: str) -> str:
    """The variable the launcher exports for an fp8_config key (`fp8_` is prefixed unless the key has it)."""
    return "ACCELERATE_" + (key if key.startswith("fp8") else "fp8_" + key).upper()


def launch_refusal(accelerate: str | None) -> dict[str, Any] | None:
    """Why no fp8 `accelerate launch` starts its script on this release even with torchao installed (the lab has no
    TE or MS-AMP): the exception and where; None when it starts."""
    r = release(accelerate)
    if r is None:
        return None
    if r[:2] == (1, 4):
        return {"type": "AttributeError", "message": LAUNCH_STRIP_CRASH, "stage": "launch"}
    if (1, 5) <= r < (1, 9):
        return {"type": "TypeError", "message": SPAWN_BOOL, "stage": "spawn"}
    return None


def exported(accelerate: str | None, key: str, value: Any) -> dict[str, str] | None:
    """The ACCELERATE_FP8_* variables (name -> value) that this key adds to what the launched script sees, beyond
    the same file without it, on a release whose launch starts (launch_refusal); None: the version is unknown."""
    r = release(accelerate)
    if r is None:
        return None
    if r < (1, 4):
        return {}  # fp8_config is never copied into the launcher's arguments
    if key == OVERRIDE_KEY:
        flags = list(value) if isinstance(value, (list, tuple)) else []
        return {PREFIX + name: str(flag) for name, flag in zip(OVERRIDE_VARS, flags, strict=False) if flag}
    return {variable_of(key): str(value)}


def _reads(accelerate: str | None) -> dict[str, dict[str, str]]:
    """Per recipe class of the release: variable (after the prefix) -> the field it sets."""
    r = release(accelerate) or (0, 0)
    te = {**TE_VARS, **(MXFP8_VAR if r >= MXFP8_FROM else {})}
    ao = AO_VARS if r >= AO_READS_ENV_FROM else {}
    classes = recipe_fields(accelerate) or {}
    table = {"TERecipeKwargs": te, "MSAMPRecipeKwargs": MSAMP_VARS, "AORecipeKwargs": ao,
             "FP8RecipeKwargs": {**te, "BACKEND": "backend"}}
    return {name: table[name] for name in classes}


def reaches(accelerate: str | None, backend: str, variables: Mapping[str, str]) -> dict[str, Any] | None:
    """Per recipe class, the fields that these exported variables change (the class built with and without them,
    TE / MS-AMP taken as installed), or "raised" where the class refuses the file's backend."""
    r = release(accelerate)
    if r is None:
        return None
    out: dict[str, Any] = {}
    for name, reads in _reads(accelerate).items():
        if name == "FP8RecipeKwargs" and r >= (1, 4) and backend not in ("TE", "MSAMP"):
            out[name] = "raised"
            continue
        fields = {reads[var.removeprefix(PREFIX)] for var in variables if var.removeprefix(PREFIX) in reads}
        if name == "AORecipeKwargs" and fields:
            fields.add("config")  # the Float8LinearConfig it builds carries the values
        out[name] = sorted(fields)
    return out


def predict_key(accelerate: str | None, *, backend: str, key: str, value: Any) -> dict[str, Any]:
    """One key of `{backend: B, key: value}` launched with mixed_precision fp8 (torchao installed, no TE/MS-AMP): the
    lab's fp8_config_keys outcome ({launch refusal} or {exported names, reaches})."""
    r = release(accelerate)
    if r is None:
        return {"outcome": "unknown"}
    refusal = launch_refusal(accelerate)
    if refusal is not None:
        return {"outcome": "raised" if refusal["stage"] == "launch" else "ok", "launch": refusal}
    variables = exported(accelerate, key, value) or {}
    got: dict[str, Any] = {"outcome": "ok", "exported": variables, "reaches": reaches(accelerate, backend, variables)}
    if r < (1, 4):
        got["launch"] = {"type": "RuntimeError", "message": NO_FP8_LIBRARY_OLD}
    return got


def unread_keys(accelerate: str | None, fp8_config: Mapping[str, Any]) -> list[str] | None:
    """The keys of an fp8_config section that no recipe class of this release reads through `accelerate launch`
    (`backend` is the launcher's own); None where the release is unknown."""
    if release(accelerate) is None:
        return None
    backend = str(fp8_config.get("backend", "TE")).upper()
    unread = []
    for key, value in fp8_config.items():
        if key == "backend":
            continue
        got = predict_key(accelerate, backend=backend, key=key, value=value)
        fields = [f for v in (got.get("reaches") or {}).values() if isinstance(v, list) for f in v]
        if not fields:
            unread.append(key)
    return unread
