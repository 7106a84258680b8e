"""Processes that a launcher (or a launch entry) starts, run warm: handed to the warm server, which forks them.

A launcher under test (`accelerate launch`, torchrun) still starts its ranks itself: each is a fresh interpreter
running the rank script. Its first act (`continue_warm_or_here`) is to hand its whole self to the warm server
through the Unix socket named in FP8DOCTOR_WARM_SOCKET: its interpreter command line (`sys.orig_argv`), complete
environment, working directory and standard streams (the descriptors themselves, SCM_RIGHTS). The server
(fp8doctor.runs.zygote) forks a child that becomes exactly that command (fp8doctor.runs.forked), or answers
"cold" when the command's environment differs from the server's in a variable its imports read: the rank then
simply goes on here, in this fresh interpreter. While the forked rank runs, this stub is its stand-in for the
launcher: it passes on every signal the launcher sends, and leaves with the rank's exit status (a signal death
as the same signal). If the stub dies, the server kills the rank with it.

`start` does the same for a launcher itself, from a worker that was forked by the warm server.
Standard library only: the stub must stay a light interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from typing import Any

SOCKET_ENV = "FP8DOCTOR_WARM_SOCKET"
RELAYED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_HEADER = struct.Struct("!I")
MAX_REQUEST = 16 * 1024 * 1024
served = False  # set in a process the server forked: it runs here, it is not a stub
server_socket: str | None = None  # in the warm server and the processes it forks: where it takes handoffs


def send_request(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    data = json.dumps(request).encode()
    payload = _HEADER.pack(len(data)) + data
    sent = socket.send_fds(sock, [payload[:4096]], fds)
    if sent < len(payload):  # a zero-length send to a server that already answered and closed raises EPIPE
        sock.sendall(payload[sent:])


def recv_request(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request and its descriptors; ValueError on a malformed one (its descriptors are closed)."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 4096, 3)
    try:
        if len(data) < _HEADER.size:
            raise ValueError("short request")
        (size,) = _HEADER.unpack(data[:_HEADER.size])
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        body = data[_HEADER.size:]
        while len(body) < size:
            chunk = sock.recv(min(65536, size - len(body)))
            if not chunk:
                raise ValueError("truncated request")
            body += chunk
        request = json.loads(body)
        if not isinstance(request, dict) or len(fds) != 3:
            raise ValueError("bad request")
        return request, fds
    except (ValueError, OSError):
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise ValueError("malformed handoff request") from None


class Handed:
    """A process the warm server forked for us, with the part of Popen's interface a launcher needs."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.returncode: int | None = None
        self._file = sock.makefile("rb")

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        if self.returncode is not None:
            return self.returncode
        self.sock.settimeout(timeout)
        try:
            line = self._file.readline()
        except TimeoutError:
            raise subprocess.TimeoutExpired(f"warm process {self.pid}", timeout or 0.0) from None
        try:
            self.returncode = int(json.loads(line)["returncode"])
        except (ValueError, KeyError, TypeError):
            self.returncode = -int(signal.SIGKILL)  # the server went away: it killed its children
        self.close()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """Closing the connection makes the server kill the process and everything it started."""
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self.sock.close()


def env_for_children() -> dict[str, str]:
    """What a launcher's ranks need to run warm: the server's socket, when this process was forked by it (a cold
    worker's launcher and ranks stay cold)."""
    return {SOCKET_ENV: server_socket} if server_socket else {}


def start(args: list[str], env: dict[str, str], fds: tuple[int, int, int], path: str | None = None
          ) -> Handed | None:
    """Hand `python ARGS` (the interpreter's command line after the interpreter) to the warm server; None when
    there is no server or it answers that this process must start cold."""
    path = path or env.get(SOCKET_ENV) or os.environ.get(SOCKET_ENV)
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        send_request(sock, {"python": sys.executable, "args": list(args), "env": dict(env), "cwd": os.getcwd()},
                     list(fds))
        answer = json.loads(sock.makefile("rb").readline() or b"{}")
    except (OSError, ValueError):
        sock.close()
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("pid"), int):
        sock.close()
        return None
    return Handed(sock, answer["pid"])


def continue_warm_or_here() -> None:
    """First thing in a rank script: run this process warm and leave with its status, or return (run it here)."""
    if served or not os.environ.get(SOCKET_ENV):
        return
    handed = start(sys.orig_argv[1:], dict(os.environ), (0, 1, 2))
    if handed is None:
        return
    for sig in RELAYED:
        signal.signal(sig, lambda num, _frame: handed.send_signal(num))
    rc = handed.wait()
    if rc < 0:
        for sig in RELAYED:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    os._exit(rc if 0 <= rc < 256 else 1)

