"""SIGTERM and SIGHUP handled like Ctrl-C: each raises `Stopped`, a KeyboardInterrupt, in the main thread.

So every cleanup written for Ctrl-C (children's process groups stopped, results file flushed, temp folders
removed) runs for the signals batch systems send too (Slurm and CI cancel with SIGTERM; a closed terminal sends
SIGHUP), and the CLI exits with 128 + the signal's number.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """fp8doctor was asked to stop by a signal other than SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def install() -> None:
    """Route SIGTERM and SIGHUP to `Stopped` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in HANDLED:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # `nohup fp8doctor ...` keeps ignoring SIGHUP
            signal.signal(sig, _raise)


def signum_of(exc: BaseException) -> int:
    """The signal behind an interruption: SIGINT for a plain KeyboardInterrupt."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_status(exc: BaseException) -> int:
    return 128 + int(signum_of(exc))


def describe(exc: BaseException) -> str:
    """"interrupted" for Ctrl-C, "stopped by SIGTERM" for the others: the word the CLI prints."""
    return f"stopped by {signal.Signals(signum_of(exc)).name}" if isinstance(exc, Stopped) else "interrupted"
