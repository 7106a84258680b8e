"""Bounds of the numeric options every command takes (--timeout, --steps, --workers, --seed, inspect's --batch and
--seq-len), checked in one place.

A value outside them is bad usage: one line, exit 2, before anything runs. `nan` and `inf` parse as floats, so
finiteness is checked here, not left to argparse.
"""

from __future__ import annotations

import math

from fp8doctor.system.errors import UsageError

MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week: a longer run is not a diagnosis
MIN_STEPS = 2  # the loss has to be seen falling
MAX_STEPS = 10_000  # the built-in model learns nothing more after a few hundred steps
MAX_WORKERS = 64
MAX_SEED = 2**32 - 1  # numpy's seed range, which the libraries' seeding goes through


def check_timeout(value: float | None, option: str = "--timeout") -> None:
    if value is None:
        return
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{option} must be a positive number of seconds (got {value:g})")
    if value > MAX_TIMEOUT_S:
        raise UsageError(f"{option} must be at most {MAX_TIMEOUT_S:.0f} seconds (one week), got {value:g}")


def check_steps(value: int | None, option: str = "--steps") -> None:
    if value is None:
        return
    if value < MIN_STEPS:
        raise UsageError(f"{option} must be at least {MIN_STEPS} (the loss has to be seen falling)")
    if value > MAX_STEPS:
        raise UsageError(f"{option} must be at most {MAX_STEPS} (got {value}): these are short diagnostic runs")


def check_workers(value: int | None, option: str = "--workers") -> None:
    if value is None:
        return
    if value < 1:
        raise UsageError(f"{option} must be at least 1")
    if value > MAX_WORKERS:
        raise UsageError(f"{option} must be at most {MAX_WORKERS} (got {value})")


def check_seeds(values: list[int] | None, option: str = "--seed") -> None:
    for value in values or []:
        if not 0 <= value <= MAX_SEED:
            raise UsageError(f"{option} must be between 0 and {MAX_SEED} (got {value})")


def check_wait(value: float | None, option: str) -> None:
    """A waiting time that may be zero (`watch --merge-wait`): finite, in [0, MAX_TIMEOUT_S]."""
    if value is None:
        return
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{option} must be zero or a positive number of seconds (got {value:g})")
    if value > MAX_TIMEOUT_S:
        raise UsageError(f"{option} must be at most {MAX_TIMEOUT_S:.0f} seconds (one week), got {value:g}")


MAX_BATCH = 1 << 16  # sequences per micro-batch per GPU (inspect's roofline)
MAX_SEQ_LEN = 1 << 22  # tokens per sequence (4M: beyond any released context length)


def check_shape(batch: int, seq_len: int) -> None:
    """inspect's --batch and --seq-len: the tokens one GPU sees per step."""
    if not 1 <= batch <= MAX_BATCH:
        raise UsageError(f"--batch must be between 1 and {MAX_BATCH} (got {batch})")
    if not 1 <= seq_len <= MAX_SEQ_LEN:
        raise UsageError(f"--seq-len must be between 1 and {MAX_SEQ_LEN} (got {seq_len})")
