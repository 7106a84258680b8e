"""The interpreter whose environment fp8doctor diagnoses: the one running fp8doctor, or another one chosen with
`--python PATH` / FP8DOCTOR_PYTHON (as `pip --python` does), so that the doctor can live in its own environment
and never be installed into the patient's.

Another interpreter's facts come from fp8doctor.system.interpreter run by that interpreter (stdlib only). Runs and
probes start with it; fp8doctor is importable there through a folder holding nothing but a link to this package,
put on PYTHONPATH for those children only, so none of the doctor's own environment leaks into the patient's.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fp8doctor.system import lifeline
from fp8doctor.system.errors import UsageError

ENV_VAR = "FP8DOCTOR_PYTHON"
PROBE_TIMEOUT_S = 60.0
MIN_RUN_PYTHON = (3, 10)
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the fp8doctor package (this file is in system/)

_selected: str | None = None


def select(path: str | None) -> None:
    """Diagnose the environment of the interpreter at `path` (None: FP8DOCTOR_PYTHON, else this one)."""
    global _selected
    path = path or os.environ.get(ENV_VAR) or None
    snapshot.cache_clear()
    package_only_dir.cache_clear()
    if path is None:
        _selected = None
        return
    exe = _executable(path)
    _selected = None if _same_as_running(exe) else exe
    snapshot()  # an interpreter that cannot run is bad input: say so now, once


def _executable(path: str) -> str:
    """An interpreter path from --python: a file, or a virtual environment's folder. Symlinks are kept as given:
    a venv's bin/python links to its base interpreter, and resolving it would lose the venv."""
    p = Path(os.path.expanduser(path))
    if p.is_dir():
        for cand in (p / "bin" / "python", p / "bin" / "python3", p / "Scripts" / "python.exe"):
            if cand.is_file():
                p = cand
                break
        else:
            raise UsageError(f"--python {path}: a folder without bin/python; give the interpreter or a venv's folder")
    if not p.is_file():
        raise UsageError(f"--python {path}: no such interpreter")
    if not os.access(p, os.X_OK):
        raise UsageError(f"--python {path}: not executable")
    return str(p.absolute())


def _same_as_running(exe: str) -> bool:
    try:
        return os.path.samefile(exe, sys.executable) and Path(exe).parent == Path(sys.executable).parent
    except OSError:
        return False


def python() -> str:
    """The interpreter that probes and runs start with."""
    return _selected or sys.executable


def is_other() -> bool:
    return _selected is not None


@functools.lru_cache(maxsize=1)
def snapshot() -> dict[str, Any]:
    """fp8doctor.system.interpreter.snapshot() of the diagnosed interpreter (read in-process when it is this one)."""
    from fp8doctor.system import interpreter

    if _selected is None:
        return interpreter.snapshot()
    source = Path(interpreter.__file__).read_text(encoding="utf-8")
    try:  # its own process group, killed whole on timeout: a shell script's `sleep` child goes too
        code, stdout, stderr = lifeline.run_captured([_selected, "-c", source], PROBE_TIMEOUT_S)
    except OSError as exc:
        raise UsageError(f"--python {_selected}: cannot run it ({exc.strerror or exc})") from None
    if code is None:
        raise UsageError(f"--python {_selected}: no answer within {PROBE_TIMEOUT_S:g} s (stopped with its children)")
    for line in stdout.splitlines():
        if line.startswith(interpreter.MARKER):
            try:
                answer = json.loads(line[len(interpreter.MARKER):])
            except (ValueError, RecursionError):
                break
            if _well_formed(answer):
                return answer
            raise UsageError(f"--python {_selected}: its answer to fp8doctor's probe is malformed (wrong types)")
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    why = lines[-1].strip()[:300] if lines else f"exit code {code}, no answer"
    raise UsageError(f"--python {_selected}: not a Python 3.8+ interpreter that fp8doctor can read ({why})")


def _well_formed(answer: Any) -> bool:
    """The interpreter probe's answer has the types fp8doctor reads (it comes from another program: untrusted)."""
    if not isinstance(answer, dict):
        return False
    packages, version = answer.get("packages"), answer.get("python_tuple")
    return (isinstance(packages, dict) and all(isinstance(k, str) and (v is None or isinstance(v, str))
                                               for k, v in packages.items())
            and isinstance(version, list) and 2 <= len(version) <= 5
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1000 for x in version)
            and isinstance(answer.get("executable"), str) and isinstance(answer.get("python"), str))


def package_versions() -> dict[str, str | None]:
    return dict(snapshot()["packages"])


def python_version() -> tuple[int, ...]:
    return tuple(snapshot()["python_tuple"])


@functools.lru_cache(maxsize=1)
def package_only_dir() -> str:
    """A folder that holds only a link named fp8doctor to this package (removed at exit): put on another
    interpreter's path, it makes fp8doctor importable there and nothing else of fp8doctor's own environment."""
    import atexit
    import shutil

    folder = tempfile.mkdtemp(prefix="fp8doctor-path-")
    atexit.register(shutil.rmtree, folder, True)
    os.symlink(_PACKAGE_DIR, os.path.join(folder, "fp8doctor"), target_is_directory=True)
    return folder


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a child of the diagnosed interpreter that imports fp8doctor (a probe, a worker, its ranks)."""
    out = dict(env)
    if _selected is None:
        return out
    old = out.get("PYTHONPATH")
    out["PYTHONPATH"] = package_only_dir() + (os.pathsep + old if old else "")
    return out


def describe() -> str:
    """One line for headers: which interpreter is diagnosed."""
    snap = snapshot()
    return f"{snap['executable']} (Python {snap['python']})"
