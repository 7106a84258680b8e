"""Helpers shared by the rules: FP8 intent and config lookup on a facts dict."""

from __future__ import annotations

from typing import Any

from fp8doctor.knowledge.precision import fp8_intent, truthy

__all__ = ["truthy"]  # re-exported for the rules


def intent(facts: dict[str, Any]) -> list[str]:
    return facts["intent"] if "intent" in facts else fp8_intent(facts)


def intent_text(signs: list[str]) -> str:
    return "FP8 is intended (" + "; ".join(signs[:4]) + (", ..." if len(signs) > 4 else "") + ")"


NO_INTENT = ("no sign of FP8 intent: no config with fp8 / mixed_precision fp8, ACCELERATE_MIXED_PRECISION is not "
             "fp8 and no ACCELERATE_FP8_* variable is set")


def configs_of(facts: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in facts.get("configs", []) if c.get("kind") == kind]


def pkg(facts: dict[str, Any], name: str) -> str | None:
    return facts.get("packages", {}).get(name)


def requested_backends(facts: dict[str, Any]) -> dict[str, str]:
    """Backends the user names explicitly ('TE'/'AO'/'MSAMP') -> where."""
    found: dict[str, str] = {}
    env = facts.get("environ", {}).get("accelerate_fp8", {})
    if env.get("ACCELERATE_FP8_BACKEND"):
        found.setdefault(env["ACCELERATE_FP8_BACKEND"].upper(), "ACCELERATE_FP8_BACKEND")
    sources = [(c["path"], c.get("data", {})) for c in facts.get("configs", [])]
    acc = facts.get("accelerate_config", {})
    if acc.get("exists"):
        sources.append((acc["path"], acc.get("data", {})))
    for path, data in sources:
        b = str(data.get("fp8_backend", "")).lower()
        if b in ("te", "torchao", "ao") and truthy(data.get("fp8")):
            found.setdefault("TE" if b == "te" else "AO", f"{path}: fp8_backend {b}")
        fp8 = data.get("fp8_config") if isinstance(data.get("fp8_config"), dict) else {}
        if fp8.get("backend") and str(data.get("mixed_precision", "")).lower() == "fp8":
            found.setdefault(str(fp8["backend"]).upper(), f"{path}: fp8_config backend {fp8['backend']}")
    return found
