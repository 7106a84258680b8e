"""Record files are untrusted input (`watch --merge DIR` reads what any node, or anyone, left in DIR): each file
is read through the same safe reader as configs, and each record is type-checked and bounded before anything
folds or judges it. A field of the wrong type is dropped (as if the observer had not recorded it); numbers that
name ranks, world sizes, pids and times are kept only inside their bounds; strings and lists are cut short."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fp8doctor.system import safeio
from fp8doctor.system.errors import UsageError
from fp8doctor.watch.records import MARKER_GLOB, MAX_WORLD, RECORD_GLOB

MAX_RECORD_FILE = 64 << 20  # one process's records: a few KiB per step at most
MAX_MARKER_FILE = 64 << 10
MAX_PID = 1 << 22  # the kernel's pid_max ceiling
MAX_TIME = 1e11  # seconds since the epoch (year 5138); times are floats in [0, MAX_TIME]

# Top-level fields of the observer's records and the type each must have. Nested values are only bounded.
_INT_FIELDS = {"pid": (1, MAX_PID), "ppid": (0, MAX_PID), "id": (0, 1 << 20), "accelerator": (0, 1 << 20),
               "arg_index": (0, 1 << 20), "forwards": (0, 1 << 62), "losses_recorded": (0, 1 << 62),
               "accelerators": (0, 1 << 20), "exit_code": (-255, 255), "expected_watches": (1, MAX_WORLD),
               "node": (0, MAX_WORLD)}
_TIME_FIELDS = ("t", "started", "ended")
_STR_FIELDS = ("kind", "host", "watch_id", "executable", "where", "source", "state", "arg_mixed_precision",
               "device", "type", "name", "capability", "marker", "message")
_DICT_FIELDS = ("rank_env", "env_at_start", "accelerate_env", "env", "result", "versions", "counter", "values",
                "trainer_args")
_LIST_FIELDS = ("argv", "models", "handlers", "fp8_handlers", "callers", "command")


def _int_in(value: Any, lo: int, hi: int) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi else None


def check_record(rec: dict[str, Any]) -> dict[str, Any]:
    """One record with its known fields type-checked and bounded: a wrong type or a value out of bounds is
    dropped; `models` keeps only mappings; `error` is a mapping or a string."""
    out = safeio.bounded(rec)
    for name, (lo, hi) in _INT_FIELDS.items():
        if name in out and _int_in(out[name], lo, hi) is None:
            del out[name]
    for name in _TIME_FIELDS:
        v = out.get(name)
        if name in out and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= MAX_TIME):
            del out[name]
    for names, kind in ((_STR_FIELDS, str), (_DICT_FIELDS, dict), (_LIST_FIELDS, list)):
        for name in names:
            if name in out and out[name] is not None and not isinstance(out[name], kind):
                del out[name]
    if isinstance(out.get("models"), list):
        out["models"] = [m for m in out["models"] if isinstance(m, dict)]
    if "error" in out and not isinstance(out["error"], (dict, str, type(None))):
        del out["error"]
    if "value" in out and not isinstance(out["value"], (int, float, str, type(None))):
        del out["value"]
    return out


def inside(path: Path, root: Path) -> bool:
    """True when `path` (found under `root`), symlinks resolved, stays inside `root`: a record may not point
    outside DIR. A file and folder that are no symlinks need no resolving (the common case, kept cheap)."""
    if not (path.is_symlink() or path.parent.is_symlink()):
        return True
    real_root = os.path.realpath(root)
    return os.path.realpath(path).startswith(real_root.rstrip(os.sep) + os.sep)


def read_untrusted(path: Path, root: Path, limit: int, what: str) -> bytes:
    """The bytes of a record or marker file: a regular file inside `root`, at most `limit` bytes, never blocking
    (UsageError with the reason otherwise)."""
    if not inside(path, root):
        raise UsageError(f"{path}: points outside {root}; {what} must be a regular file inside it")
    return safeio.read_capped(path, limit, what)


def parse_records(raw: bytes) -> tuple[list[dict[str, Any]], int]:
    """(every complete record, checked, number of cut or unreadable lines): a writer killed mid-line leaves a cut
    last line; a line that is no JSON object counts as cut too."""
    records: list[dict[str, Any]] = []
    cut = 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError):
            cut += 1
            continue
        if isinstance(rec, dict):
            records.append(check_record(rec))
        else:
            cut += 1
    return records, cut


def read_record_file(path: Path, root: Path | None = None) -> tuple[list[dict[str, Any]], int]:
    """A record file's checked records and its count of cut lines (UsageError when it is no regular file inside
    `root`, default its own folder, or is over MAX_RECORD_FILE)."""
    return parse_records(read_untrusted(path, root or path.parent, MAX_RECORD_FILE, "a record file"))


def record_files(root: Path, pattern: str = f"*/{RECORD_GLOB}") -> list[Path]:
    return sorted(root.glob(pattern))


def read_markers(root: Path, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Every watch marker under root/<host>/, checked; an unreadable one is named in `skipped` (when given)."""
    out = []
    for path in record_files(root, f"*/{MARKER_GLOB}"):
        try:
            data = json.loads(read_untrusted(path, root, MAX_MARKER_FILE, "a watch marker").decode("utf-8"))
        except (UsageError, ValueError, RecursionError) as exc:
            if skipped is not None:
                skipped.append(f"{path.relative_to(root)}: {exc}")
            continue
        if isinstance(data, dict):
            out.append({**check_record(data), "marker": str(path.relative_to(root))})
    return out
