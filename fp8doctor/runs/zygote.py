"""The warm worker server: one process that imported the heavy libraries once and forks one child per run.

    python -m fp8doctor.runs.zygote        (started by fp8doctor.runs.warm; speaks JSON lines on stdin/stdout)

Requests, one JSON object a line on stdin: {"id", "spec_path", "result_path", "err_path", "env"}. Answers on stdout:
{"id", "pid"} once the child is forked (or {"id", "error"}), and {"exit": pid, "returncode": rc} when it ended
(rc as subprocess gives it: negative for a signal). End of stdin (fp8doctor closed it or died): every child's
process group is killed and the server exits. A Unix socket in its TMPDIR (fp8doctor.runs.zygote_handoffs) takes
whole processes that launchers start (ranks) or that launch entries start (launchers), see fp8doctor.runs.handoff.

What makes a forked run equal to a fresh interpreter:
- Before the fork the server only imports (PRELOAD); it creates no Accelerator, builds no model, runs no tensor
  operation and never touches CUDA (`torch.cuda` is not initialised: the GPU is set up in the child).
- It records every environment variable its imports looked up (`import_reads`). A run whose own env sets one of
  them is not served here (fp8doctor.runs.warm runs it in a fresh interpreter): every value a preloaded library
  read at import is then the value a fresh interpreter of that run would have read.
- The child becomes a session leader, replaces its whole environment with the run's (os.environ writes through to
  the C environment), points `tempfile` at the run's folder, applies OMP_NUM_THREADS/MKL_NUM_THREADS to torch
  (libgomp reads them when it is loaded, out of Python's sight), guards its group with fp8doctor's lifeline
  (fp8doctor.runs.forked.become), runs the spec exactly as the cold worker does and leaves with os._exit after its
  result is written. A handed process is checked against the same recorded reads (`differing_reads`).
- The server's own TMPDIR is a folder fp8doctor made for it, so no import-time temp path points at the user's.
- `gc.freeze()` after the imports: a child's collections skip the shared objects instead of touching (and so
  copying) every page that holds one.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import shutil
import signal
import sys
from typing import TYPE_CHECKING, Any

from fp8doctor.runs import forked
from fp8doctor.runs.forked import THREAD_VARS

if TYPE_CHECKING:
    from fp8doctor.runs.zygote_handoffs import Handoffs

# What a run imports anyway, in import order. Transformer Engine is never preloaded: importing it reaches CUDA.
# torchao's `convert_to_float8_training` imports inductor's Triton codegen (to patch its min/max, which it still does
# in the child): 2.7 of the 2.8 s `prepare` took in a forked run (torchao 0.18, 2 CPU cores).
PRELOAD = ("torch", "transformers", "transformers.models.llama.modeling_llama", "accelerate", "torchao.float8",
           "torch._inductor.codegen.triton")
# Set again in every child (fp8doctor.runs.forked), so a value that differs from the server's is the run's.
REAPPLIED = frozenset({"TMPDIR", "TEMP", "TMP", *THREAD_VARS})
HANDOFF_SOCKET = "handoff.sock"  # in the server's own TMPDIR
TMP_PREFIX = "fp8doctor-zygote-"  # the server's own TMPDIR, made by fp8doctor.runs.warm
RUN_NAME = "fp8doctor-run"
HANDED_NAME = "fp8doctor-hand"  # a forked run's process name (its command line is still the server's)

_reads: set[str] = set()
_preload_env: dict[str, str] = {}
_scanning = 0


class _RecordingEnviron(type(os.environ)):  # type: ignore[misc]
    """os.environ that remembers every key looked up by name while the preload imports run. A whole-environment
    scan (items(), values(), copy(): tqdm picks its TQDM_* settings that way) reads every key without looking for
    any of them, so it is not counted."""

    def __getitem__(self, key: str) -> str:
        if not _scanning:
            _reads.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            _reads.add(key)
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        _reads.add(key)
        return super().get(key, default)

    def items(self) -> Any:
        return _scan(lambda: list(super(_RecordingEnviron, self).items()))

    def values(self) -> Any:
        return _scan(lambda: list(super(_RecordingEnviron, self).values()))

    def copy(self) -> dict[str, str]:
        return _scan(lambda: dict(super(_RecordingEnviron, self).items()))


def _scan(read: Any) -> Any:
    global _scanning
    _scanning += 1
    try:
        return read()
    finally:
        _scanning -= 1


def preload(modules: tuple[str, ...] = PRELOAD) -> tuple[list[str], list[str]]:
    """Import `modules` (the missing ones skipped); (modules imported, environment keys they read)."""
    _preload_env.update(os.environ)
    plain = os.environ.__class__
    os.environ.__class__ = _RecordingEnviron
    loaded = []
    try:
        for name in modules:
            try:
                __import__(name)
                loaded.append(name)
            except ImportError:
                continue
    finally:
        os.environ.__class__ = plain
    return loaded, sorted(_reads)


def cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def _child(req: dict[str, Any], lifeline_fd: int | None, server_fds: tuple[int, ...]) -> None:
    """In the forked child: become the run's process, run the spec, never return."""
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        err = os.open(req["err_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        forked.become(req["env"], req.get("cwd") or os.getcwd(), (devnull, err, err), RUN_NAME, lifeline_fd,
                      server_fds)
        from fp8doctor.runs.worker import exit_now, run_to_file

        run_to_file(req["spec_path"], req["result_path"])
        exit_now(0)
    except BaseException:  # noqa: BLE001 - nothing may return into the server's loop
        with contextlib.suppress(Exception):
            import traceback

            traceback.print_exc()
    finally:
        os._exit(70)


def differing_reads(env: dict[str, str]) -> list[str]:
    """The variables the preload read whose value in `env` is not the one the server had when it imported (set
    or unset counts): a process with that environment must start cold. TMPDIR and the thread variables are
    applied again in every child."""
    return sorted(k for k in _reads - REAPPLIED if env.get(k) != _preload_env.get(k))


def _send(obj: dict[str, Any]) -> None:
    os.write(1, (json.dumps(obj) + "\n").encode())


def _reap(children: set[int], handoffs: Handoffs | None) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if handoffs is None or not handoffs.exited(pid, rc):
            _send({"exit": pid, "returncode": rc})


def _listen() -> Handoffs | None:
    from fp8doctor.runs import handoff
    from fp8doctor.runs.zygote_handoffs import Handoffs

    path = os.path.join(os.environ.get("TMPDIR") or "/tmp", HANDOFF_SOCKET)
    try:
        handoffs = Handoffs(path)
    except OSError:
        return None
    handoff.server_socket = path  # the forked workers give it to their launchers
    return handoffs


def serve() -> int:
    from fp8doctor.system import lifeline

    lifeline_fd = None
    fd_text = os.environ.pop(lifeline.ENV, None)
    if fd_text and fd_text.isdigit():
        lifeline_fd = int(fd_text)
    loaded, reads = preload()
    handoffs = _listen()
    # The children's garbage collector must not walk (and so copy, page by page) the preloaded objects they share.
    gc.freeze()
    import threading

    _send({"ready": True, "pid": os.getpid(), "preloaded": loaded, "import_reads": reads,
           "cuda_initialised": cuda_initialised(), "threads": threading.active_count(), "python": sys.executable,
           "handoff": handoffs.path if handoffs else None})
    children: set[int] = set()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # fp8doctor ends the server by closing stdin

    def fork_handed(req: dict[str, Any], cmd: forked.Command, stdio: list[int], close: tuple[int, ...]) -> int:
        pid = os.fork()
        if pid == 0:
            try:
                forked.become(req["env"], req["cwd"], (stdio[0], stdio[1], stdio[2]), HANDED_NAME, lifeline_fd,
                              (wake_r, wake_w, *close))
                forked.run_python(cmd)
            finally:
                os._exit(70)
        children.add(pid)
        return pid

    buf = b""
    try:
        while True:
            watched = [0, wake_r, *(handoffs.fds() if handoffs else ())]
            ready, _, _ = select.select(watched, [], [], 1.0)
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
            _reap(children, handoffs)
            if handoffs is not None:
                handoffs.ready([fd for fd in ready if fd not in (0, wake_r)], fork_handed, differing_reads)
            if 0 not in ready:
                continue
            chunk = os.read(0, 65536)
            if not chunk:
                return 0
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(req, lifeline_fd, (wake_r, wake_w, *(handoffs.fds() if handoffs else ())))
                children.add(pid)
                _send({"id": req["id"], "pid": pid})
    finally:
        if handoffs is not None:
            handoffs.close()
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        own_tmp = os.environ.get("TMPDIR", "")
        if os.path.basename(own_tmp).startswith(TMP_PREFIX):  # fp8doctor may be gone (SIGKILL): clean up here
            shutil.rmtree(own_tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(serve())
