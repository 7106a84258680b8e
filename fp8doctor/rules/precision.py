"""The effective mixed precision rule: does fp8 reach the Accelerator, given every config, env and version?"""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.generations import fix_lines
from fp8doctor.precision import effective_precision
from fp8doctor.rules.common import NO_INTENT, intent, intent_text


def chain_text(prec: dict[str, Any]) -> str:
    return " -> ".join(f"{c['stage']} [{c['source']}]: {c['value']}" for c in prec["chain"])


def check_effective_precision(facts: dict[str, Any]) -> Finding:
    prec = facts.get("precision") or effective_precision(facts)
    signs = intent(facts)
    eff = prec["effective"]
    detail = "Chain: " + chain_text(prec)
    if prec.get("hardware_note"):
        detail += "\n" + prec["hardware_note"]
    if not signs:
        return Finding("precision.effective", Level.SKIP, f"Effective mixed precision: {eff} (FP8 not intended)",
                       NO_INTENT + ".\n" + detail)
    if eff == "fp8":
        return Finding("precision.effective", Level.OK, "Effective mixed precision: fp8", detail)
    if prec.get("prediction"):
        detail += f"\nPredicted outcome: {prec['prediction']}."
    return Finding("precision.effective", Level.FAIL, f"FP8 is intended but {eff} reaches the Accelerator",
                   intent_text(signs) + ".\n" + detail, "\n".join(fix_lines(facts)))
