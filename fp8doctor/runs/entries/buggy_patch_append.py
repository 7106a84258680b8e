"""Buggy patch, "always append the recipe" form (see buggy.py)."""

from __future__ import annotations

from fp8doctor.runs.entries.buggy import run_buggy
from fp8doctor.runs.entries.common import Context


def run(ctx: Context) -> None:
    run_buggy(ctx, "append")
