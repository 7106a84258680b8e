"""Behaviour generations implied by installed versions (pure functions on version strings).

Accelerate and transformers changed how FP8 intent travels to the Accelerator several times; these tables turn
a version into the behaviour that matters (each statement backed by fp8doctor/knowledge/predict.py's observed rules).
The lab's observations hold these statements (tests/test_generation_predictions.py, tests/test_env_generations.py).
"""

from __future__ import annotations

from typing import Any

from fp8doctor.knowledge.intent import chosen_backend, read_intent
from fp8doctor.knowledge.predict import (
    ERROR_NEW,
    ERROR_OLD,
    NO_CUDA_BUILD,
    NO_FP8_LIBRARY,
    RECIPES_NEW,
    RECIPES_OLD,
    transformers_passes,
)
from fp8doctor.knowledge.versions import parse_version


def accelerate_generation(version: str | None) -> dict[str, Any]:
    """What an Accelerate version does with FP8 recipe handlers and env-only fp8 (as the lab observed it)."""
    v = parse_version(version)
    if v is None:
        return {"installed": bool(version), "version": version, "generation": "unknown" if version else "absent"}
    base = v.release[:2]
    out: dict[str, Any] = {"installed": True, "version": version, "error_message": ERROR_NEW,
                           "recipe_classes": list(RECIPES_NEW), "env_fp8_works": False,
                           "reads_fp8_backend_env": base >= (1, 9)}
    if base < (1, 4):
        out.update(
            generation="<=1.3", recipe_classes=list(RECIPES_OLD), error_message=ERROR_OLD,
            summary=("no torchao backend: only FP8RecipeKwargs exists (Transformer Engine or MS-AMP, checked when it "
                     "is built); mixed_precision fp8 without either raises \"" + NO_FP8_LIBRARY + "\""),
        )
    elif base < (1, 5):
        out.update(
            generation="1.4",
            summary=("mixed_precision fp8 asserts a CUDA build of torch (\"" + NO_CUDA_BUILD + "\" on a CPU build); "
                     "a recipe handler needs the mixed_precision argument itself to be 'fp8'"),
        )
    elif base < (1, 8):
        out.update(
            generation="1.5-1.7",
            summary=("fp8 converts nothing without a recipe handler passed by the caller (ACCELERATE_MIXED_PRECISION"
                     "=fp8 or mixed_precision='fp8' alone leaves every layer as it is); a recipe handler needs the "
                     "mixed_precision argument itself to be 'fp8'"
                     + ("; the torchao path raises TypeError in prepare (layer filter)" if base == (1, 5) else "")),
        )
    elif base < (1, 9):
        out.update(
            generation="1.8",
            summary=("fp8 set only by ACCELERATE_MIXED_PRECISION raises ValueError (\"" + ERROR_NEW + "\") with "
                     "torchao installed; the torchao path raises AttributeError (fsdp_plugin) without FSDP"),
        )
    else:
        out.update(
            generation=">=1.9", env_fp8_works=True,
            summary=("fp8 reaches the Accelerator from the mixed_precision argument or ACCELERATE_MIXED_PRECISION "
                     "(which `accelerate launch` sets from its config file); ACCELERATE_FP8_BACKEND is read"),
        )
    out["mxfp8_block_scaling_option"] = base >= (1, 11)
    return out


def transformers_generation(version: str | None) -> dict[str, Any]:
    """How a transformers version carries TrainingArguments' precision to the Accelerator (lab-observed)."""
    v = parse_version(version)
    if v is None:
        return {"installed": bool(version), "version": version, "generation": "unknown" if version else "absent"}
    passes = transformers_passes(version, None, env={})
    assert passes is not None
    out = {"installed": True, "version": version, "writes_env": passes["writes_env"],
           "passes_mixed_precision": passes["mixed_precision"] is not None,
           "always_passes_kwargs_handlers": passes["kwargs_handlers"] is not None}
    if v.major < 5:
        return {**out, "generation": "4.x",
                "summary": ("TrainingArguments writes os.environ['ACCELERATE_MIXED_PRECISION'] ('bf16' when bf16=True, "
                            "overwriting fp8); the Trainer passes neither mixed_precision nor kwargs_handlers to "
                            "Accelerator, which reads the variable")}
    if not out["always_passes_kwargs_handlers"]:
        return {**out, "generation": "5.0-5.2",
                "summary": ("TrainingArguments.mixed_precision = ACCELERATE_MIXED_PRECISION or 'no', replaced by "
                            "'bf16' when bf16=True; the Trainer passes it as Accelerator(mixed_precision=...) and "
                            "passes no kwargs_handlers")}
    return {**out, "generation": ">=5.3",
            "summary": ("TrainingArguments.mixed_precision = ACCELERATE_MIXED_PRECISION or 'no', replaced by 'bf16' "
                        "when bf16=True; the Trainer passes it as Accelerator(mixed_precision=...) and always passes "
                        "kwargs_handlers (a DistributedDataParallelKwargs), so a patch that injects a recipe only when "
                        "kwargs_handlers is missing injects nothing")}


def intended_backend(facts: dict[str, Any]) -> str:
    """'TE' or 'AO': the backend the user names, else the installed one Accelerate would pick (knowledge/intent.py)."""
    return chosen_backend(read_intent(facts), facts.get("packages", {}), bool(facts.get("te_import", {}).get("ok")))


def fix_lines(facts: dict[str, Any]) -> list[str]:
    """The fixes for the installed versions and the user's command, rendered (see fp8doctor/knowledge/fixes.py)."""
    from fp8doctor.knowledge.fixes import fixes_for, render_all

    return render_all(fixes_for(facts, intended_backend(facts))).splitlines()
