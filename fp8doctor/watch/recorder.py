"""What a watched process writes: its record file (one whole JSON line per write), the facts it starts with and the
small value helpers the observer's records use. Imported by the observer at the watched process's start."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from typing import Any

from fp8doctor.watch import records

WATCH_DIR_ENV = "FP8DOCTOR_WATCH_DIR"
# Env vars whose value at a given moment explains which precision won.
PRECISION_ENV = (
    "ACCELERATE_MIXED_PRECISION",
    "ACCELERATE_FP8_BACKEND",
    "ACCELERATE_USE_CPU",
    "ACCELERATE_CONFIG_FILE",
    "ACCELERATE_USE_DEEPSPEED",
    "ACCELERATE_USE_FSDP",
)


def env_now() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in PRECISION_ENV}


def plain(value: Any) -> Any:
    """A JSON-safe, short view of a value (enums by value, objects by class name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    inner = getattr(value, "value", None)
    if isinstance(inner, (str, int)):
        return inner
    return str(value)[:200]


def num(value: Any) -> Any:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if f == f and f not in (float("inf"), float("-inf")) else str(f)


class Recorder:
    """Appends JSON lines to this process's file, one whole line per write(2); reopens after fork so each pid keeps
    its own file (named <rank>-<pid>.jsonl under `watch --records`, else proc-<pid>.jsonl)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._pid = -1
        self._fd: int | None = None
        self._lock = threading.Lock()
        # A fork taken while another thread writes must not inherit a held lock.
        os.register_at_fork(after_in_child=self._new_lock)

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def _file(self) -> Any:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            name = (records.record_file_name(os.environ, self._pid) if os.environ.get(records.RECORDS_ENV)
                    else f"proc-{self._pid}.jsonl")
            self._fd = records.open_append(os.path.join(self.directory, name))  # kept open for the process's life
            self._write_line({"kind": "process", **process_facts()})
        return self._fd

    def _write_line(self, record: dict[str, Any]) -> None:
        from fp8doctor.redact import redact  # record files outlive the run under --records: no secret in them

        record.setdefault("t", time.time())
        records.append_line(self._fd, json.dumps(redact(record), default=plain))

    def write(self, kind: str, **fields: Any) -> None:
        try:
            with self._lock:
                self._file()
                self._write_line({"kind": kind, **fields})
        except Exception:  # noqa: BLE001 - observing must never break the watched command
            pass


def script_argv() -> list[str]:
    """The command's argv without the interpreter. Under `python -m module`, sys.argv is ['-m', *args] until runpy
    has found the module (the observer starts before that), so the module's name comes from sys.orig_argv."""
    argv = list(getattr(sys, "argv", None) or [])
    orig = list(getattr(sys, "orig_argv", None) or [])
    if argv[:1] != ["-m"] or len(orig) <= len(argv):
        return argv
    tok = orig[len(orig) - len(argv)]  # the module, or `-mmodule` written as one token
    module = tok.removeprefix("-m") if tok.startswith("-m") else tok
    return ["-m", module, *argv[1:]]


def process_facts() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": script_argv(),
        "executable": sys.executable,
        "host": records.host_name(),
        "watch_id": os.environ.get(records.WATCH_ID_ENV),
        "rank_env": {k: os.environ.get(k) for k in records.IDENTITY_ENV if os.environ.get(k) is not None},
        "env_at_start": START_ENV,
        "accelerate_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("ACCELERATE_")},
    }


START_ENV = env_now()
def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in ("torch", "accelerate", "transformers", "torchao", "transformer-engine", "trl", "peft", "axolotl",
                 "llamafactory"):
        out[dist] = None
        for name in (dist, dist.replace("-", "_")):
            try:
                out[dist] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


# The observer's per-process state, shared by its Accelerate and transformers halves.
STATE: dict[str, Any] = {
    "accelerators": {}, "next_id": 0, "losses": 0, "patched": set(), "ao_user_configs": set(), "forwards": [],
    "trainers": [],
}
_recorder: Recorder | None = None


def start(directory: str) -> bool:
    """Open this process's recorder (once); False when it was already started."""
    global _recorder
    if _recorder is not None:
        return False
    _recorder = Recorder(directory)
    record_uncaught()
    return True


def record(kind: str, **fields: Any) -> None:
    if _recorder is not None:
        _recorder.write(kind, **fields)


def record_uncaught() -> None:
    """Record the exception that ends the process (its type and message: a frontend's refusal, quoted by the
    verdict), then let the interpreter's own hook print it as always."""
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        try:  # redacted whole, then cut: a secret cut short would no longer be recognised
            from fp8doctor.redact import redact

            record("exception", type=getattr(kind, "__name__", str(kind)), message=redact(str(value))[:2000])
        except Exception:  # noqa: BLE001 - observing must never change what the command prints
            pass
        previous(kind, value, tb)

    sys.excepthook = excepthook


def callers(skip_files: tuple[str, ...], limit: int = 6) -> list[str]:
    """'file.py:function' of the frames that led here, innermost first, outside the observer's own modules."""
    own = os.path.dirname(__file__)
    out = []
    for frame in reversed(traceback.extract_stack()[:-1]):
        if os.path.dirname(frame.filename) == own or frame.filename.endswith(skip_files):
            continue
        out.append(f"{frame.filename}:{frame.lineno}:{frame.name}")
        if len(out) >= limit:
            break
    return out
