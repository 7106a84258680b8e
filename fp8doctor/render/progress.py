"""Progress of a long command on stderr: a tqdm bar when stdout is a terminal, else one plain line per finished
stage or run (logs, CI, `| tee`), so minutes of work are never silent."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from fp8doctor.redact import redact
from fp8doctor.render.controls import escape_controls


class Progress:
    """`done(label)` after each finished item; `close()` at the end. Thread-safe (matrix workers call it)."""

    def __init__(self, total: int, command: str, unit: str, stream: IO[str] | None = None,
                 interactive: bool | None = None, enabled: bool = True) -> None:
        self.total, self.command, self.unit = total, command, unit
        self.stream = stream if stream is not None else sys.stderr
        self.count = 0
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        if interactive is None:
            interactive = _isatty(sys.stdout) and _isatty(self.stream)
        self._bar: Any = None
        self.enabled = enabled and total > 0
        if self.enabled and interactive:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=f"fp8doctor {command}", unit=unit, file=self.stream, leave=False,
                             dynamic_ncols=True)

    def done(self, label: str) -> None:
        if not self.enabled:
            return
        label = escape_controls(redact(label))
        with self._lock:
            self.count += 1
            if self._bar is not None:
                self._bar.set_postfix_str(label, refresh=False)
                self._bar.update(1)
                return
            elapsed = time.monotonic() - self._t0
            self.stream.write(f"fp8doctor {self.command}: {self.count}/{self.total} {self.unit}s done "
                              f"({elapsed:.0f} s): {label}\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
