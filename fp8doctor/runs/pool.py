"""Run specs in isolated child processes (`python -m fp8doctor.runs.worker`), one process group each.

`run_spec` never raises: a spec that cannot run here is "skipped" without spawning, a timeout kills the whole
group ("timed_out"), a signal death is "crashed" with the signal's name, a worker that wrote nothing is
"crashed" with its stderr tail. The child's environment is controlled: FP8-relevant variables of the user's
shell (ACCELERATE_*, NVTE_*, HF_* settings, torch.distributed rendezvous variables) are recorded in the result
under "env" and removed, then the spec's own env is applied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from fp8doctor.redact import redact
from fp8doctor.runs.spec import RunSpec
from fp8doctor.system import lifeline

# Variables that change what a run does; never inherited silently from the user's shell.
CONTROLLED_ENV = re.compile(
    r"^(ACCELERATE_|NVTE_|FSDP_|TORCHAO_|FP8DOCTOR_|PYTORCH_CUDA_ALLOC_CONF$|TORCH_COMPILE|TORCHDYNAMO_|"
    r"(MASTER_ADDR|MASTER_PORT|WORLD_SIZE|RANK|LOCAL_RANK|LOCAL_WORLD_SIZE|GROUP_RANK|ROLE_RANK|TORCHELASTIC_\w*)$|"
    r"HF_(?!HOME$|HUB_CACHE$|DATASETS_CACHE$|TOKEN$|TOKEN_PATH$))"
)
STDERR_TAIL_CHARS = 4000
TERM_GRACE_S = 3.0

OnResult = Callable[[RunSpec, dict[str, Any]], None]
# Children in flight, so that stop_all() can end them (they run in their own session: Ctrl-C does not reach them).
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


def child_env(spec: RunSpec, env_base: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(environment for the child, the controlled variables removed from the base)."""
    base = dict(os.environ if env_base is None else env_base)
    removed = {k: v for k, v in base.items() if CONTROLLED_ENV.match(k)}
    env = {k: v for k, v in base.items() if k not in removed}
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", str(max(1, min(4, (os.cpu_count() or 2) // max(1, spec.nproc)))))
    env.update({str(k): str(v) for k, v in spec.env.items()})
    return env, removed


def skipped_result(spec: RunSpec, reason: str) -> dict[str, Any]:
    return {"spec": spec.to_dict(), "outcome": "skipped", "error": None, "skip_reason": reason, "accelerator": None,
            "fp8_layers": [], "eligible_layers": [], "forwards": {}, "fp8_active": False, "losses": [],
            "step_times_s": [], "notes": []}


def _failed_result(spec: RunSpec, outcome: str, error: dict[str, Any], wall: float) -> dict[str, Any]:
    r = skipped_result(spec, "")
    r.update(outcome=outcome, error=error, skip_reason=None, timings_s={"total": round(wall, 3)})
    return r


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    lifeline.stop_group(proc, TERM_GRACE_S)


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - STDERR_TAIL_CHARS))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_spec(spec: RunSpec, *, python: str | None = None, env_base: Mapping[str, str] | None = None,
             check_skip: bool = True) -> dict[str, Any]:
    """Run one spec in a child process and return its result dict, redacted (a child's result is a boundary
    where data leaves the run); never raises. `python`: the interpreter to run it with (default: the diagnosed
    one, fp8doctor.system.target)."""
    from fp8doctor.system import target

    python = python or target.python()
    t0 = time.perf_counter()
    try:
        result = _run_spec(spec, python=python, env_base=env_base, check_skip=check_skip)
    except Exception as exc:  # noqa: BLE001 - the harness failing is a result too
        result = _failed_result(spec, "crashed", {"type": type(exc).__name__, "signal": None,
                                                  "message": f"fp8doctor harness error: {exc}"},
                                time.perf_counter() - t0)
    return redact(result)


def _run_spec(spec: RunSpec, *, python: str, env_base: Mapping[str, str] | None, check_skip: bool
              ) -> dict[str, Any]:
    try:
        spec.validate()
    except ValueError as exc:
        return _failed_result(spec, "raised", {"type": "ValueError", "message": str(exc), "where": "RunSpec"}, 0.0)
    probe_error = None
    if check_skip:
        try:
            from fp8doctor.runs.machine import skip_reason

            reason = skip_reason(spec)
        except Exception as exc:  # noqa: BLE001 - a broken probe must not stop the run
            reason = None
            probe_error = f"{type(exc).__name__}: {exc}"
        if reason:
            return skipped_result(spec, reason)
    from fp8doctor.system import target

    env, removed = child_env(spec, env_base)
    if python == target.python():
        env = target.child_env(env)
    srv = _warm_server(spec, python, env_base)  # started once, before this run's clock
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fp8doctor-run-") as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        result_path = os.path.join(tmp, "result.json")
        err_path = os.path.join(tmp, "stderr.txt")
        with open(spec_path, "w", encoding="utf-8") as fh:
            json.dump(spec.to_dict(), fh)
        env["FP8DOCTOR_RUN_DIR"] = tmp
        # The run's own temp files (a Trainer's output_dir, a launcher's config) live in the run's folder, which
        # fp8doctor removes even when the run was killed before it could clean up.
        env["TMPDIR"] = tmp
        line = lifeline.read_end()  # the worker's group dies with fp8doctor, even on SIGKILL
        with open(err_path, "wb") as err, open(os.devnull, "rb") as devnull:
            with _LIVE_LOCK:
                if _STOPPING.is_set():  # stop_all() already ran: start nothing new
                    return _failed_result(spec, "crashed", {"type": "Interrupted", "signal": None, "message":
                                                            "fp8doctor was stopped before this run started"}, 0.0)
                proc: Any = None
                if srv is not None:
                    try:  # the server's own lifeline read end reaches the child
                        proc = srv.start(spec_path, result_path, err_path, env)
                    except RuntimeError:
                        proc = None
                if proc is None:
                    env[lifeline.ENV] = str(line)
                    try:
                        proc = subprocess.Popen([python, "-m", "fp8doctor.runs.worker", spec_path, result_path],
                                                stdin=devnull, stdout=err, stderr=err, env=env,
                                                start_new_session=True, pass_fds=(line,))
                    except OSError as exc:
                        return _failed_result(spec, "crashed", {"type": type(exc).__name__, "message": str(exc),
                                                                "signal": None}, time.perf_counter() - t0)
                _LIVE.add(proc)
            try:
                proc.wait(timeout=spec.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
            else:
                # Ranks or helpers the worker left behind must not outlive the run.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                    lifeline.wait_group_gone(proc.pid)
            with _LIVE_LOCK:
                _LIVE.discard(proc)
        wall = time.perf_counter() - t0
        stderr_tail = _tail(err_path)
        result = None
        if not timed_out and os.path.exists(result_path):
            try:
                with open(result_path, encoding="utf-8") as fh:
                    result = json.load(fh)
            except (OSError, ValueError) as exc:
                stderr_tail += f"\n[fp8doctor] unreadable result file: {exc}"
    if timed_out:
        result = _failed_result(spec, "timed_out", {"type": "Timeout", "message":
                                f"no result within {spec.timeout_s:g} s; the process group was killed",
                                "signal": None}, wall)
    elif result is None:
        if proc.returncode is not None and proc.returncode < 0:
            sig = _signal_name(proc.returncode)
            result = _failed_result(spec, "crashed", {"type": "Signal", "signal": sig,
                                                      "message": f"worker killed by {sig}"}, wall)
        else:
            result = _failed_result(spec, "crashed", {"type": "NoResult", "signal": None, "exit_code": proc.returncode,
                                                      "message": f"worker exited with code {proc.returncode} "
                                                                 "without writing a result"}, wall)
    result["returncode"] = proc.returncode if not timed_out else None
    result["stderr_tail"] = stderr_tail[-STDERR_TAIL_CHARS:] if result["outcome"] != "finished" else ""
    result["wall_s"] = round(wall, 3)
    result["worker"] = "cold" if isinstance(proc, subprocess.Popen) else "warm"
    result["worker_pid"] = proc.pid  # leader of the run's process group
    result["env"] = {"removed_from_caller": removed, "applied": dict(spec.env)}
    if probe_error:
        result.setdefault("notes", []).append(f"skip check failed ({probe_error}); ran anyway")
    return result


def _warm_server(spec: RunSpec, python: str, env_base: Mapping[str, str] | None) -> Any:
    """The warm server that may run this spec, or None: the run then starts a fresh interpreter (fp8doctor.runs.warm
    says when)."""
    from fp8doctor.runs import warm

    if warm.cold_requested() or env_base is not None:
        return None
    from fp8doctor.system import target

    server_env, _ = child_env(dataclasses.replace(spec, env={}))
    if python == target.python():
        server_env = target.child_env(server_env)
    srv = warm.server(python, server_env)
    return srv if srv is not None and warm.serves(srv, spec.env) else None


def stop_all() -> None:
    """Kill the process group of every run in flight and start no new one (Ctrl-C, SIGTERM): SIGTERM, then
    SIGKILL after TERM_GRACE_S. `allow_runs()` lifts the stop for a later caller in this process."""
    with _LIVE_LOCK:
        _STOPPING.set()
        procs = list(_LIVE)
    threads = [threading.Thread(target=_kill_group, args=(p,), daemon=True) for p in procs]  # in parallel
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def allow_runs() -> None:
    _STOPPING.clear()


def run_specs(specs: Iterable[RunSpec], workers: int = 1, on_result: OnResult | None = None,
              **kwargs: Any) -> list[dict[str, Any]]:
    """Run specs on `workers` threads (each a child process); results in spec order, `on_result(spec, result)`
    called as each finishes (from the calling thread's pool, serialised by a lock). On Ctrl-C the queued specs
    are dropped and the running ones killed, so the interrupt ends the call within seconds."""
    specs = list(specs)
    allow_runs()
    results: list[dict[str, Any] | None] = [None] * len(specs)
    lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = {pool.submit(run_spec, spec, **kwargs): i for i, spec in enumerate(specs)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_result is not None:
                with lock:
                    on_result(specs[i], results[i])  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_all()
        raise
    finally:
        pool.shutdown(wait=True)
    return results  # type: ignore[return-value]
