"""The effective mixed precision rule: does fp8 reach the Accelerator, given every config, env and version?"""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.fixes import fixes_for, render_all
from fp8doctor.knowledge.generations import intended_backend
from fp8doctor.knowledge.precision import effective_precision
from fp8doctor.render.controls import as_written
from fp8doctor.rules.common import NO_INTENT, intent, intent_text


def chain_text(prec: dict[str, Any]) -> str:
    return " -> ".join(f"{c['stage']} [{c['source']}]: {as_written(c['value'])}" for c in prec["chain"])


def fix_text(facts: dict[str, Any]) -> str:
    return render_all(fixes_for(facts, intended_backend(facts)))


def check_effective_precision(facts: dict[str, Any]) -> Finding:
    prec = facts.get("precision") or effective_precision(facts)
    signs = intent(facts)
    eff = prec["effective"]
    outcome = prec.get("outcome") or {}
    detail = "Chain: " + chain_text(prec)
    if prec.get("hardware_note"):
        detail += "\n" + prec["hardware_note"]
    if not signs:
        return Finding("precision.effective", Level.SKIP, f"Effective mixed precision: {as_written(eff)} (FP8 not "
                       "intended)",
                       NO_INTENT + ".\n" + detail)
    if prec.get("prediction"):
        detail += f"\nPredicted outcome: {prec['prediction'].rstrip('.')}."
    if eff == "fp8" and outcome.get("outcome") in ("ok", "unknown") and outcome.get("fp8", True):
        return Finding("precision.effective", Level.OK, "Effective mixed precision: fp8", detail)
    if eff == "fp8":
        return Finding("precision.effective", Level.FAIL, "fp8 reaches the Accelerator, but this accelerate "
                       "does not train in FP8 with it", intent_text(signs) + ".\n" + detail, fix_text(facts))
    if prec.get("with_launch") == "fp8":
        return Finding("precision.effective", Level.WARN,
                       f"{eff} reaches the Accelerator; fp8 only when started with `{prec['launch']}`",
                       intent_text(signs) + ".\nAccelerator() reads only its argument and the environment: a config "
                       "file applies only through `accelerate launch` (which ignores ACCELERATE_CONFIG_FILE).\n"
                       + detail, fix_text(facts))
    return Finding("precision.effective", Level.FAIL, f"FP8 is intended but {eff!r} reaches the Accelerator",
                   intent_text(signs) + ".\n" + detail, fix_text(facts))
