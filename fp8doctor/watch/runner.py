"""Run the watched command with the observer injected into its Python processes, then judge what it saw."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fp8doctor import verdicts as vocabulary
from fp8doctor.redact import redact
from fp8doctor.system import interrupts, lifeline
from fp8doctor.system.errors import UsageError
from fp8doctor.watch import records
from fp8doctor.watch.adapters import lora_summary
from fp8doctor.watch.collect import collect
from fp8doctor.watch.frontend_stop import frontend_stopped
from fp8doctor.watch.recorder import WATCH_DIR_ENV
from fp8doctor.watch.verdicts import facts_from_processes, fix_hint, overall_verdict

INJECT_DIR = Path(__file__).resolve().parent / "inject"
TERM_GRACE_S = 5.0


def child_env(watch_dir: str, base: dict[str, str] | None = None, watch_id: str | None = None) -> dict[str, str]:
    """The environment of the watched command: the observer's directory first on PYTHONPATH, and where to write
    (with a watch id: `--records` file names, and the id that tells this watch's files from other nodes')."""
    env = dict(os.environ if base is None else base)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(INJECT_DIR) + (os.pathsep + old if old else "")
    env[WATCH_DIR_ENV] = watch_dir
    from fp8doctor.system import target

    # Only fp8doctor, never its parent folder: that is fp8doctor's own site-packages when it is installed as a tool.
    env["FP8DOCTOR_WATCH_ROOT"] = target.package_only_dir()
    if watch_id is not None:
        env[records.RECORDS_ENV] = "1"
        env[records.WATCH_ID_ENV] = watch_id
    return env


def _records_dir(directory: str) -> Path:
    """DIR/<host> for `--records DIR`, created (with DIR) if needed."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise UsageError(f"--records {directory}: not a directory")
    host_dir = root / records.host_name()
    try:
        host_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--records {directory}: cannot create {host_dir}: {exc.strerror or exc}") from None
    return host_dir


def _stop_group(proc: subprocess.Popen, grace_s: float = TERM_GRACE_S) -> None:
    lifeline.stop_group(proc, grace_s)
    proc.wait()  # the command's exit status is reported


def _pass_on(proc: subprocess.Popen, received: int) -> None:
    """fp8doctor got Ctrl-C, SIGTERM or SIGHUP: the command's group gets the same signal and some time to end
    (a training may save a checkpoint), then is stopped. Another interrupt meanwhile stops it at once."""
    lifeline.signal_group(proc.pid, received)
    try:
        proc.wait(timeout=TERM_GRACE_S * 2)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
    except KeyboardInterrupt:
        _stop_group(proc, grace_s=1.0)


@contextlib.contextmanager
def _terminal_given_to(pgid: int) -> Iterator[None]:
    """Make the command's process group the terminal's foreground group while it runs, as a shell would, so
    Ctrl-C and keyboard input reach it directly; fp8doctor's own group gets the terminal back afterwards."""
    fd = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if threading.current_thread() is threading.main_thread() and sys.stdin.isatty():
            fd = sys.stdin.fileno()
            if os.tcgetpgrp(fd) != os.getpgrp():
                fd = None
            else:
                os.tcsetpgrp(fd, pgid)
    try:
        yield
    finally:
        if fd is not None:
            # Taking the terminal back from the background would stop this process with SIGTTOU.
            previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                with contextlib.suppress(OSError):
                    os.tcsetpgrp(fd, os.getpgrp())
            finally:
                signal.signal(signal.SIGTTOU, previous)


def run_watch(
    cmd: list[str],
    timeout: float | None = None,
    *,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    env: dict[str, str] | None = None,
    records_dir: str | None = None,
) -> dict[str, Any]:
    """Run CMD (output streams to the terminal unless stdout/stderr say otherwise) and report what FP8 did in it.

    With records_dir, every process's records are kept under records_dir/<host>/ (see fp8doctor.watch.records)
    and a marker says whether this watch is running or done, for `fp8doctor watch --merge`."""
    if not cmd:
        raise UsageError("no command to watch: usage `fp8doctor watch [options] -- CMD ARGS...`")
    path = (env or os.environ).get("PATH")
    if os.sep not in cmd[0] and shutil.which(cmd[0], path=path) is None:
        raise UsageError(f"command not found: {cmd[0]}")
    if os.sep in cmd[0] and not os.access(cmd[0], os.X_OK):
        raise UsageError(f"command not found or not executable: {cmd[0]}")
    base_env = dict(os.environ if env is None else env)
    watch_id = marker = None
    if records_dir is None:
        watch_dir = tempfile.mkdtemp(prefix="fp8doctor-watch-")
    else:
        host_dir = _records_dir(records_dir)
        watch_dir, watch_id = str(host_dir), f"{records.host_name()}-{os.getpid()}"
        marker = records.marker_path(host_dir, os.getpid())
        records.write_marker(marker, {"watch_id": watch_id, "host": records.host_name(), "pid": os.getpid(),
                                      "state": "running", "command": redact(list(cmd)), "started": time.time()})
    # Own process group: a timeout or Ctrl-C can then stop the launcher and every rank it started.
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    start = time.monotonic()
    timed_out = False
    stopped_by: int | None = None  # the signal fp8doctor itself received (SIGINT, SIGTERM, SIGHUP)
    guard = None
    try:
        try:
            proc = subprocess.Popen(cmd, env=child_env(watch_dir, base_env, watch_id), stdout=stdout, stderr=stderr,
                                    **group)
        except OSError as exc:
            raise UsageError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
        try:
            guard = lifeline.guard_group(proc.pid)  # the command's group dies with fp8doctor, even on SIGKILL
            with _terminal_given_to(proc.pid):
                proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(proc)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP through fp8doctor.system.interrupts
            stopped_by = interrupts.signum_of(exc)
            _pass_on(proc, stopped_by)
        duration = time.monotonic() - start
        procs = collect(watch_dir, watch_id)
    finally:
        lifeline.release(guard)
        if records_dir is None:
            shutil.rmtree(watch_dir, ignore_errors=True)
    rc = proc.returncode
    sig = -rc if rc is not None and rc < 0 else None
    verdict = overall_verdict(procs)
    lora = lora_summary(procs)
    verdict, facts = frontend_stopped(verdict, procs, list(cmd), {**facts_from_processes(procs), "command": list(cmd)})
    placed = None
    if marker is not None:
        place = records.watch_place(base_env, [p.get("rank_env") or {} for p in procs])
        placed = {"dir": str(records_dir), "host": records.host_name(), "watch_id": watch_id, **place}
        records.write_marker(marker, {
            "watch_id": watch_id, "host": records.host_name(), "pid": os.getpid(), "state": "done",
            "command": redact(list(cmd)), "exit_code": rc, "timed_out": timed_out,
            "verdict": verdict["verdict"], **place,
        })
    return {
        "command": list(cmd),
        "exit_code": rc if sig is None else None,
        "signal": signal.Signals(sig).name if sig else None,
        "timed_out": timed_out,
        "timeout_s": timeout,
        "interrupted": stopped_by is not None,
        "stopped_by": signal.Signals(stopped_by).name if stopped_by is not None else None,
        "duration_s": round(duration, 2),
        "verdict": verdict["verdict"],
        "reason": verdict.get("reason"),
        "winner": verdict.get("winner"),
        "frontend": verdict.get("frontend") or ("PEFT" if lora else None),
        **({"peft": lora} if lora else {}),
        "error": verdict.get("error"),
        "ranks": verdict["ranks"],
        "helpers": verdict["helpers"],
        "fix": fix_hint(verdict, facts),
        "versions": facts["packages"],
        "processes": procs,
        **({"records": placed} if placed else {}),
    }


def exit_code(result: dict[str, Any]) -> int:
    """fp8doctor's own interruption first (128+N for the signal it received: 130 on Ctrl-C whatever the command
    did with it), then the command's failure (124 timeout, 128+N signal, its exit code), then 1 unless FP8 was
    active."""
    if result.get("stopped_by"):
        return 128 + int(signal.Signals[result["stopped_by"]])
    if result.get("timed_out"):
        return 124
    if result.get("signal"):
        return 128 + int(signal.Signals[result["signal"]])
    if result.get("exit_code"):
        return int(result["exit_code"])
    return vocabulary.exit_code(str(result.get("verdict")))
