"""`fp8doctor watch -- CMD`: what FP8 really did inside any training command.

Kept import-light: the injected observer imports `fp8doctor.watch.observer` in every Python process of the
watched command, which loads this package first.
"""

from __future__ import annotations

from typing import Any


def run_watch(cmd: list[str], timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run CMD with the observer injected; return {command, exit_code, signal, timed_out, verdict, ranks, fix, ...}."""
    from fp8doctor.watch.runner import run_watch as _run

    return _run(cmd, timeout, **kwargs)


def render(result: dict[str, Any], fmt: str = "text") -> str:
    """The result as "text", "md" (for `fp8doctor report --watch`) or "json"; secrets redacted."""
    from fp8doctor.watch.render import render as _render

    return _render(result, fmt)


__all__ = ["render", "run_watch"]
