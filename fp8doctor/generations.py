"""Behaviour generations implied by installed versions (pure functions on version strings).

Accelerate and transformers changed how FP8 intent travels to the Accelerator several times; these tables turn
a version into the behaviour that matters, and `fix_lines` into the concrete lines that make FP8 win.
Facts come from reading each version's source; the installed Accelerate's row is held against the library
itself by tests/test_env_generations.py.
"""

from __future__ import annotations

from typing import Any

from packaging.version import InvalidVersion, Version

ERROR_OLD = "Passing in a FP8RecipeKwargs object requires setting `mixed_precision='fp8'`."
ERROR_NEW = "Passing in an FP8 configuration requires setting `mixed_precision='fp8'`."


def _v(version: str | None) -> Version | None:
    if not version:
        return None
    try:
        return Version(version)
    except InvalidVersion:
        return None


def accelerate_generation(version: str | None) -> dict[str, Any]:
    """What an Accelerate version does with FP8 recipe handlers and env-only fp8."""
    v = _v(version)
    if v is None:
        return {"installed": bool(version), "version": version, "generation": "unknown" if version else "absent"}
    base = v.release[:2]
    out: dict[str, Any] = {"installed": True, "version": version}
    if base < (1, 4):
        out.update(
            generation="<=1.3",
            recipe_classes=["FP8RecipeKwargs"],
            check="argument",
            error_message=ERROR_OLD,
            env_fp8_with_handler_ok=False,
            summary="only FP8RecipeKwargs exists (TERecipeKwargs/AORecipeKwargs are missing: importing them fails)",
        )
    elif base < (1, 9):
        out.update(
            generation="1.4-1.8",
            recipe_classes=["TERecipeKwargs", "AORecipeKwargs", "MSAMPRecipeKwargs", "FP8RecipeKwargs (deprecated)"],
            check="argument",
            error_message=ERROR_NEW,
            env_fp8_with_handler_ok=False,
            summary=("the FP8 check compares only the `mixed_precision` argument: fp8 set only by env/config plus "
                     "a recipe handler still raises"
                     + ("; env-only fp8 may convert no layer" if base < (1, 8) else "")),
        )
    else:
        out.update(
            generation=">=1.9",
            recipe_classes=["TERecipeKwargs", "AORecipeKwargs", "MSAMPRecipeKwargs", "FP8RecipeKwargs (deprecated)"],
            check="argument-or-state",
            error_message=ERROR_NEW,
            env_fp8_with_handler_ok=True,
            summary="the FP8 check honours the argument, ACCELERATE_MIXED_PRECISION and the config file",
        )
    out["mxfp8_block_scaling_option"] = base >= (1, 11)
    out["auto_backend_order"] = ["AO", "TE", "MSAMP"] if base >= (1, 4) else ["MSAMP", "TE"]
    return out


def transformers_generation(version: str | None) -> dict[str, Any]:
    """How a transformers version carries TrainingArguments' precision to the Accelerator."""
    v = _v(version)
    if v is None:
        return {"installed": bool(version), "version": version, "generation": "unknown" if version else "absent"}
    if v.major < 5:
        return {
            "installed": True, "version": version, "generation": "4.x",
            "writes_env": True, "passes_mixed_precision": False, "always_passes_kwargs_handlers": False,
            "summary": ("TrainingArguments.__post_init__ writes os.environ['ACCELERATE_MIXED_PRECISION'] "
                        "('bf16' when bf16=True), overwriting a user's fp8"),
        }
    return {
        "installed": True, "version": version, "generation": "5.x",
        "writes_env": False, "passes_mixed_precision": True, "always_passes_kwargs_handlers": True,
        "summary": ("TrainingArguments.mixed_precision = ACCELERATE_MIXED_PRECISION or 'no', replaced by 'bf16' when "
                    "bf16=True; the Trainer passes it to Accelerator(mixed_precision=...) and always passes "
                    "kwargs_handlers, so a patch that injects a recipe only when kwargs_handlers is missing "
                    "injects nothing"),
    }


def intended_backend(facts: dict[str, Any]) -> str:
    """'TE' or 'AO' from the user's configs/env, else the installed one Accelerate would pick."""
    env = facts.get("environ", {}).get("accelerate_fp8", {})
    if env.get("ACCELERATE_FP8_BACKEND", "").upper() in ("TE", "AO"):
        return env["ACCELERATE_FP8_BACKEND"].upper()
    for cfg in facts.get("configs", []):
        data = cfg.get("data", {})
        b = str(data.get("fp8_backend", "")).lower()
        if b == "te":
            return "TE"
        if b in ("torchao", "ao"):
            return "AO"
        fp8 = data.get("fp8_config") if isinstance(data.get("fp8_config"), dict) else {}
        if str(fp8.get("backend", "")).upper() in ("TE", "AO"):
            return str(fp8["backend"]).upper()
    acc = facts.get("accelerate_config", {}).get("fp8_config") or {}
    if str(acc.get("backend", "")).upper() in ("TE", "AO"):
        return str(acc["backend"]).upper()
    pkgs = facts.get("packages", {})
    if pkgs.get("transformer-engine") and facts.get("te_import", {}).get("ok"):
        return "TE"
    return "AO" if pkgs.get("torchao") else "TE"


def fix_lines(facts: dict[str, Any]) -> list[str]:
    """Concrete env / config / CLI lines that make fp8 reach the Accelerator for the installed versions."""
    pkgs = facts.get("packages", {})
    acc = accelerate_generation(pkgs.get("accelerate"))
    tf = transformers_generation(pkgs.get("transformers"))
    backend = intended_backend(facts)
    lines: list[str] = []
    if acc.get("generation") == "<=1.3":
        lines.append("pip install 'accelerate>=1.9'   # this accelerate has no TERecipeKwargs/AORecipeKwargs")
    lines += [
        "# accelerate_fp8.yaml",
        "mixed_precision: fp8",
        "fp8_config:",
        f"  backend: {backend}",
    ]
    if backend == "TE":
        lines += ["  fp8_format: HYBRID", "  amax_compute_algo: max", "  amax_history_len: 1024"]
    lines.append("accelerate launch --config_file accelerate_fp8.yaml train.py   # or: llamafactory-cli train cfg.yaml")
    lines.append(f"export ACCELERATE_MIXED_PRECISION=fp8 ACCELERATE_FP8_BACKEND={backend}"
                 "   # without accelerate launch")
    if tf.get("generation") in ("4.x", "5.x"):
        why = ("transformers 4.x rewrites ACCELERATE_MIXED_PRECISION to bf16 when bf16 is true"
               if tf["generation"] == "4.x" else
               "transformers 5.x passes mixed_precision='bf16' to the Accelerator when bf16 is true")
        lines.append(f"bf16: false   # in the training config / TrainingArguments: {why}")
    if acc.get("generation") == "1.4-1.8":
        lines.append("# accelerate 1.4-1.8: do not inject a recipe handler unless Accelerator(mixed_precision='fp8') "
                     "is passed explicitly; let Accelerate build it from the env/config, or upgrade to accelerate>=1.9")
    if tf.get("always_passes_kwargs_handlers"):
        lines.append("# a patch injecting a recipe must append to kwargs_handlers "
                     "(transformers 5.x always passes some)")
    return lines
