"""Child-process probes: code that must import torch or TE runs in its own interpreter (the diagnosed one,
fp8doctor.system.target), all in parallel, each with a timeout. A probe that fails, hangs or prints garbage becomes a
fact carrying its error."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from typing import Any

from fp8doctor.system import lifeline, safeio

DEFAULT_TIMEOUT_S = 20.0
# A probe prints one line with this prefix followed by JSON; libraries may print anything else around it.
MARKER = "FP8DOCTOR_PROBE_RESULT "
MAX_OUTPUT = 1 << 20  # characters of a probe's stdout or stderr read


def _last_line_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


Started = dict[str, tuple[subprocess.Popen, float, Any, Any]]


def start_probes(probes: dict[str, str], env: dict[str, str] | None = None) -> Started:
    """Start every probe now; pair with `finish_probes` so the caller can do other work meanwhile."""
    from fp8doctor.system import target

    started: Started = {}
    python = target.python()
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONWARNINGS", "ignore")
    for name, code in probes.items():
        # Files, not pipes: a chatty probe must not block on a full pipe while another one is awaited.
        out = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by _read in finish_probes
        err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        # Its own session: on timeout the whole tree is killed (lifeline.kill_tree), grandchildren included.
        proc = subprocess.Popen([python, "-c", code], stdout=out, stderr=err, text=True,
                                env=child_env, stdin=subprocess.DEVNULL, start_new_session=True)
        started[name] = (proc, time.monotonic(), out, err)
    return started


def _read(f: Any) -> str:
    f.seek(0)
    text = f.read(MAX_OUTPUT)
    f.close()
    return text


def finish_probes(started: Started, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """Wait for started probes (one shared deadline); each gives {ok, result, error, seconds}."""
    deadline = time.monotonic() + timeout_s
    out: dict[str, dict[str, Any]] = {}
    for name, (proc, t0, fout, ferr) in started.items():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            lifeline.kill_tree(proc)
            _read(fout), _read(ferr)
            out[name] = {"ok": False, "result": None, "seconds": round(time.monotonic() - t0, 2),
                         "error": f"probe timed out after {timeout_s:g} s (killed)"}
            continue
        lifeline.kill_tree(proc)  # what it left running in its group (a library's helper process)
        seconds = round(time.monotonic() - t0, 2)
        stdout, stderr = _read(fout), _read(ferr)
        payload = None
        for line in stdout.splitlines():
            if line.startswith(MARKER):
                payload = line[len(MARKER):]
        if payload is None:
            why = _last_line_error(stderr) or f"exit code {proc.returncode}, no result printed"
            out[name] = {"ok": False, "result": None, "seconds": seconds, "error": why}
            continue
        try:
            result = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            out[name] = {"ok": False, "result": None, "seconds": seconds, "error": f"unreadable probe output: {exc}"}
            continue
        if not isinstance(result, dict):  # another interpreter's output is untrusted input
            out[name] = {"ok": False, "result": None, "seconds": seconds,
                         "error": f"unreadable probe output: a JSON {type(result).__name__}, not an object"}
            continue
        result = safeio.bounded(result)
        out[name] = {"ok": True, "result": result, "seconds": seconds, "error": None}
    return out


def run_probes(probes: dict[str, str], timeout_s: float = DEFAULT_TIMEOUT_S,
               env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    return finish_probes(start_probes(probes, env), timeout_s)


def probe_code(body: str) -> str:
    """Wrap a probe body that assigns `result` (a JSON-able dict) into a script printing it after MARKER."""
    return (
        "import json\n"
        f"{body}\n"
        f"print({MARKER!r} + json.dumps(result, default=str), flush=True)\n"
    )
