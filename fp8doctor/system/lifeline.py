"""Children that do not outlive fp8doctor, even when fp8doctor is killed with SIGKILL.

fp8doctor holds the write end of one pipe for its whole life and never writes to it (close-on-exec: no child
holds it). A watchdog inside each child's process group blocks reading the other end. When fp8doctor dies, however
it dies, the kernel closes the write end, the read returns end-of-file and the watchdog kills its whole process
group with SIGKILL: launcher, ranks and helpers with it.

- A run of the pool: the worker (our code, leader of its own session) forks the watchdog first thing
  (`guard_own_group`). The read end reaches it through FP8DOCTOR_LIFELINE_FD, so a harness that died even before
  that fork is seen at once.
- `watch`: the user's command is not our code, so fp8doctor starts the watchdog into the command's group
  (`guard_group`) right after starting the command.

A process that leaves the group (`setsid`: torchrun's ranks, a helper) is still reached: the watchdog follows the
parent links in /proc from every member of its group before it kills (`kill_group_and_strays`), and so do
fp8doctor's own stop paths (`descendants`). Only a process whose parent is gone already (a daemon that
double-forked, now a child of init) has no link left to follow.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

ENV = "FP8DOCTOR_LIFELINE_FD"
_pipe: tuple[int, int] | None = None
_lock = threading.Lock()


def read_end() -> int:
    """The read end of fp8doctor's lifeline, created on first use; inherited only where passed on purpose."""
    global _pipe
    with _lock:
        if _pipe is None:
            _pipe = os.pipe()
        return _pipe[0]


def watchdog(fd: int) -> None:
    """Block until fp8doctor is gone, then SIGKILL this process group (this watchdog included)."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)  # a Ctrl-C or `kill 0` meant for the command must not cut the line
    while True:
        try:
            if not os.read(fd, 1):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    kill_group_and_strays(os.getpgrp())


def group_and_strays(pgid: int) -> list[int]:
    """Every live process of group `pgid` and every descendant of one (those that left it with setsid, such as a
    launcher's ranks in their own session), through the parent links in /proc."""
    children: dict[int, list[int]] = {}
    found: set[int] = set()
    for pid, fields in _proc_stats():
        children.setdefault(int(fields[1]), []).append(pid)
        if int(fields[2]) == pgid and fields[0] != b"Z":
            found.add(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


def kill_group_and_strays(pgid: int) -> None:
    """The watchdog's last act: stop the group's tree (SIGSTOP, so that nobody forks or is reparented to init
    meanwhile), look again until no new process shows up, then SIGKILL all of it, this process last."""
    me = os.getpid()
    seen: set[int] = set()
    for _ in range(5):
        tree = set(group_and_strays(pgid)) - {me}
        if tree <= seen:
            break
        kill_all(sorted(tree - seen), signal.SIGSTOP)
        seen |= tree
    kill_all(sorted(seen))
    os.killpg(pgid, signal.SIGKILL)


def guard_own_group() -> None:
    """First thing in a child that leads its own group: fork the watchdog into it when fp8doctor passed a lifeline.
    Runs before this process starts any thread (fork)."""
    fd_text = os.environ.pop(ENV, None)
    if not fd_text:
        return
    try:
        fd = int(fd_text)
        os.fstat(fd)
    except (ValueError, OSError):
        return
    if os.fork() == 0:
        try:
            watchdog(fd)
        finally:
            os._exit(0)
    os.close(fd)


def guard_group(pgid: int) -> subprocess.Popen[bytes] | None:
    """A watchdog started inside process group `pgid` (same session as fp8doctor); end it with `release`."""
    fd = read_end()
    try:
        return subprocess.Popen([sys.executable, "-m", "fp8doctor.system.lifeline", str(fd)], pass_fds=(fd,),
                                # setpgid in the child rather than Popen(process_group=): that needs Python 3.11
                                preexec_fn=functools.partial(os.setpgid, 0, pgid), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):  # the group is gone already (the command ended at once)
        return None


def release(guard: subprocess.Popen[bytes] | None) -> None:
    if guard is not None:
        with contextlib.suppress(OSError):
            guard.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            guard.wait(timeout=5)


def _proc_stats() -> list[tuple[int, list[bytes]]]:
    """(pid, the fields of /proc/PID/stat after the command name: [0] state, [1] ppid, [2] pgrp, [3] session, ...)
    of every process."""
    out: list[tuple[int, list[bytes]]] = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 3:
                out.append((int(entry), fields))
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, through parent links in /proc: members that left the group included."""
    children: dict[int, list[int]] = {}
    for child, fields in _proc_stats():
        children.setdefault(int(fields[1]), []).append(child)
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, from /proc."""
    return [pid for pid, fields in _proc_stats() if fields[0] != b"Z" and int(fields[2]) == pgid]


def wait_group_gone(pgid: int, timeout_s: float = 2.0, others: list[int] | None = None) -> None:
    """Wait (briefly) until a SIGKILLed group, and the `others` pids, have no live (non-zombie) member: a SIGKILL
    takes effect asynchronously, and orphans are reaped by init, not by us."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (group_members(pgid) or _live(others or [])):
        time.sleep(0.01)


def _live(pids: list[int]) -> list[int]:
    wanted = set(pids)
    return [pid for pid, fields in _proc_stats() if pid in wanted and fields[0] != b"Z"]


def kill_all(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process group that `proc` leads and the descendants that left it (setsid), SIGKILL what is left
    after `grace_s`; returns once `proc` is reaped (or 10 s after the SIGKILL) and the group has no live member
    (members it started, such as launcher ranks and their watchdog, may outlive the leader)."""
    strays = descendants(proc.pid)
    try:
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            signal_group(proc.pid, sig)
            kill_all(strays, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        signal_group(proc.pid, signal.SIGKILL)
        wait_group_gone(proc.pid, others=strays)
    finally:
        kill_all(strays)


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group that `proc` leads (started with start_new_session) and every descendant that
    left it, then reap `proc`; also after `proc` ended, for what it left behind (`sleep &` in a shell script)."""
    strays = descendants(proc.pid)
    signal_group(proc.pid, signal.SIGKILL)
    kill_all(strays)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    wait_group_gone(proc.pid, 5.0, strays)


MAX_CAPTURED = 1 << 20  # bytes of a short child's stdout and stderr kept; the rest is never read


def run_captured(argv: list[str], timeout_s: float,
                 env: Mapping[str, str] | None = None) -> tuple[int | None, str, str]:
    """Run a short child (a probe) in its own session with stdout and stderr in files, not pipes (a grandchild
    holding a pipe cannot keep us waiting); on timeout, and after it ends, its whole tree is killed.
    (exit code, or None on timeout; stdout; stderr), each capped at MAX_CAPTURED bytes."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        code: int | None = None
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        finally:
            kill_tree(proc)
        out.seek(0)
        err.seek(0)
        return (code, out.read(MAX_CAPTURED).decode("utf-8", "replace"),
                err.read(MAX_CAPTURED).decode("utf-8", "replace"))


if __name__ == "__main__":
    watchdog(int(sys.argv[1]))
