"""Matrix results as JSON lines: one line per finished cell, flushed and fsynced, so an interrupted matrix
keeps what it measured and `--resume` continues it."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from fp8doctor.redact import redact
from fp8doctor.system import safeio

RECORD_SCHEMA = "fp8doctor.matrix.cell/1"
MAX_RESULTS_BYTES = 256 * 1024 * 1024  # a --resume file: thousands of cells fit; /dev/zero-like input does not


def _finite(obj: Any) -> Any:
    """Non-finite floats as the result schema stores them ("nan" / "inf" / "-inf"): the file is strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def make_record(key: str, role: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": RECORD_SCHEMA,
        "key": key,
        "role": role,
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "result": redact(_finite(result)),
    }


class ResultStore:
    """Append-only JSON-lines file of cell records, held open and locked (flock) for the whole matrix, so that
    two matrices writing one `--out` cannot interleave their cells: the second one stops with one line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] | None = None

    def lock(self) -> None:
        """Create the file (and its folder) and take the writer's lock; UsageError when another process holds
        it or the path is not a regular file, OSError when the place is not writable."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = safeio.open_append(self.path, "the results file")
            try:
                safeio.lock_exclusive(self._fh, str(self.path), "fp8doctor matrix")
            except BaseException:
                self.close()
                raise

    def open_for_append(self) -> None:
        """Lock, then end a truncated last line so the next record starts clean."""
        self.lock()
        assert self._fh is not None
        if os.fstat(self._fh.fileno()).st_size > 0:
            with open(self.path, "rb") as fh:  # checked regular by lock()
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
            if last != b"\n":
                self._fh.write(b"\n")
                self._fh.flush()

    def append(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self.open_for_append()
        assert self._fh is not None
        line = json.dumps(record, sort_keys=True, allow_nan=False, default=str) + "\n"
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


@dataclass
class Loaded:
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> last record with that key
    problems: list[str] = field(default_factory=list)  # one sentence per line that could not be read


def load(path: str | os.PathLike[str]) -> Loaded:
    """Read the records back; a truncated or corrupt line is reported in `problems` and skipped, never fatal."""
    out = Loaded()
    p = Path(path)
    if not safeio.check_regular(p, "the results file", missing_ok=True):
        return out
    raw = safeio.read_capped(p, MAX_RESULTS_BYTES, "a results file")
    lines = raw.split(b"\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last = lineno == len(lines) and not raw.endswith(b"\n")
        try:
            rec = json.loads(line.decode("utf-8"))
            if not isinstance(rec, dict) or "key" not in rec or not isinstance(rec.get("result"), dict):
                raise ValueError("not a matrix cell record")
        except (ValueError, UnicodeDecodeError) as exc:
            what = "truncated last line" if last else "unreadable line"
            out.problems.append(f"{p}:{lineno}: {what} ignored ({type(exc).__name__}: {str(exc)[:80]})")
            continue
        out.records[rec["key"]] = rec
    return out


def reusable_keys(loaded: Loaded) -> set[str]:
    """Keys whose cell was measured (any outcome but skipped): --resume does not run them again."""
    return {k for k, rec in loaded.records.items() if rec["result"].get("outcome") != "skipped"}


def write_all(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    store = ResultStore(path)
    store.open_for_append()
    try:
        for rec in records:
            store.append(rec)
    finally:
        store.close()
