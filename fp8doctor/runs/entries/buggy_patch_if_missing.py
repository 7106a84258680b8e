"""Buggy patch, "inject the recipe only if kwargs_handlers is missing" form (see buggy.py)."""

from __future__ import annotations

from fp8doctor.runs.entries.buggy import run_buggy
from fp8doctor.runs.entries.common import Context


def run(ctx: Context) -> None:
    run_buggy(ctx, "if_missing")
