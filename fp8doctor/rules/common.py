"""Helpers shared by the rules: FP8 intent and config lookup on a facts dict."""

from __future__ import annotations

from typing import Any

from fp8doctor.knowledge.intent import read_intent
from fp8doctor.knowledge.values import truthy

__all__ = ["truthy"]  # re-exported for the rules


def intent(facts: dict[str, Any]) -> list[str]:
    return facts["intent"] if "intent" in facts else list(read_intent(facts).signs)


def intent_text(signs: list[str]) -> str:
    return "FP8 is intended (" + "; ".join(signs[:4]) + (", ..." if len(signs) > 4 else "") + ")"


NO_INTENT = ("no sign of FP8 intent: no config with fp8 / mixed_precision fp8, ACCELERATE_MIXED_PRECISION is not "
             "fp8 and no ACCELERATE_FP8_* variable is set")


def configs_of(facts: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in facts.get("configs", []) if c.get("kind") == kind]


def pkg(facts: dict[str, Any], name: str) -> str | None:
    return facts.get("packages", {}).get(name)


def requested_backends(facts: dict[str, Any]) -> dict[str, str]:
    """Backends the user names explicitly ('TE'/'AO'/'MSAMP') -> where (knowledge/intent.py reads them)."""
    return dict(read_intent(facts).backends)
