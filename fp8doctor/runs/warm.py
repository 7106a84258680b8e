"""fp8doctor's side of the warm worker server (fp8doctor.runs.zygote): start it, hand it runs, wait for them.

One server per interpreter (fp8doctor's own, or the one given with --python), started on the first run and ended
when fp8doctor exits (its stdin closes; if fp8doctor is killed, the same happens and every run's lifeline watchdog
kills its group). A run goes to a fresh interpreter instead (`use_warm` is False) when the user asked for it
(`--cold`, FP8DOCTOR_COLD=1), when the server cannot start, or when the run's own env sets a variable the server's
imports read (their values would then differ from what a fresh interpreter of that run reads).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

COLD_ENV = "FP8DOCTOR_COLD"
START_TIMEOUT_S = 300.0
_cold = False
_servers: dict[str, Server | None] = {}
_servers_lock = threading.Lock()


def prefer_cold(cold: bool = True) -> None:
    """`--cold`: every run in a fresh interpreter, as before warm workers existed."""
    global _cold
    _cold = cold


def add_cold_argument(parser: Any) -> None:
    """`--cold` for the commands that run specs (matrix, repro, report)."""
    parser.add_argument("--cold", action="store_true", help=f"start every run in a fresh Python interpreter instead "
                        f"of forking it from a warm worker that already imported torch and the libraries "
                        f"(slower; same results; also {COLD_ENV}=1)")


def cold_requested() -> bool:
    return _cold or os.environ.get(COLD_ENV, "") not in ("", "0")


class WarmProc:
    """A run forked by the server, with the part of Popen's interface the pool uses (pid, returncode, wait)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done = threading.Event()

    def _exited(self, returncode: int | None) -> None:
        self.returncode = returncode
        self._done.set()

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"warm run {self.pid}", timeout or 0.0)
        return self.returncode


class Server:
    def __init__(self, python: str, env: dict[str, str]) -> None:
        from fp8doctor.runs.zygote import TMP_PREFIX
        from fp8doctor.system import lifeline

        self.tmp = tempfile.mkdtemp(prefix=TMP_PREFIX)
        env = {**env, "TMPDIR": self.tmp}
        self.env = dict(env)  # what its imports saw (the lifeline's variable aside)
        line = lifeline.read_end()
        env[lifeline.ENV] = str(line)
        self.proc = subprocess.Popen([python, "-m", "fp8doctor.runs.zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                     start_new_session=True, pass_fds=(line,))
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._next_id = 0
        self._started: dict[int, tuple[threading.Event, list[Any]]] = {}
        self._procs: dict[int, WarmProc] = {}
        self._early_exits: dict[int, int] = {}
        assert self.proc.stdout is not None
        hello = self._read_hello(self.proc.stdout)
        self.import_reads: frozenset[str] = frozenset(hello.get("import_reads", ()))
        self.preloaded: list[str] = list(hello.get("preloaded", ()))
        self.cuda_initialised = bool(hello.get("cuda_initialised"))
        self.threads = int(hello.get("threads", 0))
        self.handoff: str | None = hello.get("handoff")  # its socket for launchers' ranks (fp8doctor.runs.handoff)
        if self.cuda_initialised:  # a forked child cannot use a CUDA context it inherited: every run goes cold
            self.close()
            raise RuntimeError("the warm worker server's imports initialised CUDA")
        self.alive = True
        threading.Thread(target=self._reader, daemon=True).start()

    def _read_hello(self, stream: IO[bytes]) -> dict[str, Any]:
        result: list[dict[str, Any]] = []

        def read() -> None:
            with contextlib.suppress(Exception):
                result.append(json.loads(stream.readline()))

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(START_TIMEOUT_S)
        if not result or not result[0].get("ready"):
            self.close()
            raise RuntimeError("the warm worker server did not start")
        return result[0]

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            with self._lock:
                if "exit" in msg:
                    proc = self._procs.pop(msg["exit"], None)
                    if proc is None:
                        self._early_exits[msg["exit"]] = msg["returncode"]
                    else:
                        proc._exited(msg["returncode"])
                elif "id" in msg and msg["id"] in self._started:
                    event, box = self._started[msg["id"]]
                    box.append(msg)
                    event.set()
        # The server is gone: runs in flight are reparented and can no longer be reaped here; wait for them by pid.
        with self._lock:
            self.alive = False
            for event, _box in self._started.values():
                event.set()
            pending = list(self._procs.values())
            self._procs.clear()
        for proc in pending:
            threading.Thread(target=_wait_orphan, args=(proc,), daemon=True).start()

    def start(self, spec_path: str, result_path: str, err_path: str, env: Mapping[str, str]) -> WarmProc:
        """Fork one run; raises RuntimeError when the server cannot."""
        with self._lock:
            if not self.alive:
                raise RuntimeError("the warm worker server has ended")
            self._next_id += 1
            rid = self._next_id
            event: threading.Event = threading.Event()
            box: list[Any] = []
            self._started[rid] = (event, box)
        req = {"id": rid, "spec_path": spec_path, "result_path": result_path, "err_path": err_path,
               "env": dict(env), "cwd": os.getcwd()}
        try:
            with self._write_lock:
                assert self.proc.stdin is not None
                self.proc.stdin.write((json.dumps(req) + "\n").encode())
                self.proc.stdin.flush()
        except OSError as exc:
            raise RuntimeError(f"the warm worker server has ended: {exc}") from None
        event.wait(START_TIMEOUT_S)
        with self._lock:
            self._started.pop(rid, None)
            if not box or "pid" not in box[0]:
                raise RuntimeError("the warm worker server did not start the run")
            proc = WarmProc(box[0]["pid"])
            if proc.pid in self._early_exits:
                proc._exited(self._early_exits.pop(proc.pid))
            else:
                self._procs[proc.pid] = proc
        return proc

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _wait_orphan(proc: WarmProc) -> None:
    while os.path.exists(f"/proc/{proc.pid}"):
        time.sleep(0.1)
    proc._exited(None)


def server(python: str, env: Mapping[str, str]) -> Server | None:
    """The server for `python`, started on first use with `env` (a run's environment without the run's own
    variables); None when it cannot start (then runs are cold)."""
    with _servers_lock:
        srv = _servers.get(python)
        if srv is not None and not srv.alive:
            srv.close()
            srv = None
            _servers.pop(python, None)
        if python not in _servers:
            try:
                srv = Server(python, dict(env))
            except (OSError, RuntimeError):
                srv = None
            _servers[python] = srv
        return _servers[python]


def serves(srv: Server, run_env: Mapping[str, str]) -> bool:
    """Whether the server may run a spec whose own env is `run_env` (none of it was read by the preload)."""
    return not (set(run_env) & srv.import_reads)


def close_all() -> None:
    with _servers_lock:
        servers = [s for s in _servers.values() if s is not None]
        _servers.clear()
    for srv in servers:
        srv.close()


atexit.register(close_all)
