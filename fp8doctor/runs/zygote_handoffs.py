"""The warm server's side of fp8doctor.runs.handoff: a Unix socket in the server's own folder on which a launcher's
rank (or a launch entry, for the launcher itself) hands over a whole process to be forked warm.

Per connection: one request (interpreter, command line after it, environment, working directory, three standard
stream descriptors). The answer is {"pid"} once the child is forked, or {"cold": why} when the request is not one
the server can take as it is: another interpreter, a command-line form fp8doctor.runs.forked does not start, or an
environment that differs from the server's in a variable its imports read (zygote.differing_reads). Then
{"returncode"} when the child ended. If the connection closes first (the stub or the launcher was killed), the
child and everything it started are killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from fp8doctor.runs import forked, handoff

# (request, command, its three stdio descriptors, the server's descriptors the child must close) -> child pid
ForkChild = Callable[[dict[str, Any], forked.Command, list[int], tuple[int, ...]], int]


class Handoffs:
    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.by_conn: dict[int, tuple[socket.socket, int]] = {}  # connection fd -> (connection, child pid)
        self.by_pid: dict[int, socket.socket] = {}

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *self.by_conn]

    def ready(self, fds: list[int], fork_child: ForkChild, differing: Callable[[dict[str, str]], list[str]]) -> None:
        """Handle the readable descriptors among `fds`: closed connections first, then new ones (a descriptor
        number freed by the first may be reused by the second)."""
        for fd in fds:
            if fd in self.by_conn:  # a stub never writes after its request: the stub or the launcher is gone
                conn, pid = self.by_conn.pop(fd)
                self.by_pid.pop(pid, None)
                conn.close()
                kill_tree(pid)
        if self.listener.fileno() in fds:
            self._accept(fork_child, differing)

    def _accept(self, fork_child: ForkChild,
                differing: Callable[[dict[str, str]], list[str]]) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        fds: list[int] = []
        try:
            conn.settimeout(5.0)
            request, fds = handoff.recv_request(conn)
            reason = _refusal(request, differing)
            if reason:
                _answer(conn, {"cold": reason})
                conn.close()
                return
            pid = fork_child(request, forked.parse(request["args"]), fds, (conn.fileno(), *self.fds()))
            conn.settimeout(None)
            self.by_conn[conn.fileno()] = (conn, pid)
            self.by_pid[pid] = conn
            _answer(conn, {"pid": pid})
        except (OSError, ValueError):
            conn.close()
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def exited(self, pid: int, returncode: int) -> bool:
        """A child ended: tell its connection; False when `pid` was not a handed process."""
        conn = self.by_pid.pop(pid, None)
        if conn is None:
            return False
        self.by_conn.pop(conn.fileno(), None)
        with contextlib.suppress(OSError):
            _answer(conn, {"returncode": returncode})
        conn.close()
        # Its group outlives it by its lifeline watchdog (and any helper it left): end them.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        return True

    def close(self) -> None:
        for conn, pid in list(self.by_conn.values()):
            kill_tree(pid)
            conn.close()
        self.by_conn.clear()
        self.by_pid.clear()
        self.listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _refusal(request: dict[str, Any], differing: Callable[[dict[str, str]], list[str]]) -> str | None:
    env, args = request.get("env"), request.get("args")
    if request.get("python") != sys.executable:
        return "another interpreter"
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
            and isinstance(args, list) and all(isinstance(a, str) for a in args)
            and isinstance(request.get("cwd"), str)):
        return "malformed request"
    try:
        forked.parse(args)
    except ValueError as exc:
        return str(exc)
    reads = differing(env)
    if reads:
        return "read at import with another value: " + ", ".join(reads)
    return None


def _answer(conn: socket.socket, obj: dict[str, Any]) -> None:
    conn.sendall((json.dumps(obj) + "\n").encode())


def kill_tree(pid: int) -> None:
    """SIGKILL a handed process's group and every descendant that left it (a launcher's ranks, their stubs)."""
    from fp8doctor.system import lifeline

    strays = lifeline.descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    lifeline.kill_all(strays)
