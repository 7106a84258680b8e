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


# No package-level `render`: importing the submodule fp8doctor.watch.render would replace it with the module.
__all__ = ["run_watch"]
