"""Rules: each a small function facts -> Finding(s); `evaluate` runs them all (a crashing rule is an error).
The checks, their stable ids and the finding ids each gives are listed once, in rules/registry.py."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Check, Finding, run_checks
from fp8doctor.rules.registry import CHECKS

ALL_CHECKS: tuple[Check, ...] = tuple(c.run for c in CHECKS)


def evaluate(facts: dict[str, Any]) -> list[Finding]:
    return run_checks(ALL_CHECKS, facts)
