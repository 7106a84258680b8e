"""Open the paths a user names, safely: regular files only, never blocking, reads capped while reading.

Every file fp8doctor reads from a user (configs, ACCELERATE_CONFIG_FILE, a `--resume` results file) or writes
where a user says (`matrix --out`, `report --out-dir`) goes through here. A FIFO, device or socket is refused
with one line (UsageError, exit 2) before anything is read or written: opening one could block forever
(a FIFO with no writer) or never end (`/dev/zero`). Files are opened with O_NONBLOCK and checked again on the
open descriptor, so a path swapped for a FIFO between the check and the open cannot hang the tool either.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from fp8doctor.system.errors import UsageError

CHUNK = 1 << 16
MAX_TEXT = 4096  # characters of any one string read from another program (an error message, an argv entry)
MAX_ITEMS = 1000  # items of any one list or mapping read from another program
MAX_DEPTH = 8


def kind_of(mode: int) -> str:
    """What a stat mode is, in words, for the one-line refusal."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse_irregular(mode: int, shown: str, what: str) -> None:
    if not stat.S_ISREG(mode):
        raise UsageError(f"{shown}: is {kind_of(mode)}, not a regular file; {what} must be a regular file")


def _reason(exc: OSError) -> str:
    return "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))


def check_regular(path: str | os.PathLike[str], what: str = "it", missing_ok: bool = False) -> bool:
    """Raise UsageError unless `path` is a regular file (a missing one is an error unless `missing_ok`);
    True when it exists."""
    shown = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if missing_ok:
            return False
        raise UsageError(f"{shown}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read it ({_reason(exc)})") from None
    _refuse_irregular(st.st_mode, shown, what)
    return True


def read_capped(path: str | os.PathLike[str], limit: int, what: str = "a config") -> bytes:
    """The whole content of a regular file of at most `limit` bytes; counted while reading (a /proc file says
    size 0), so nothing over the cap is ever held in memory."""
    shown = os.fspath(path)
    check_regular(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read it ({_reason(exc)})") from None
    try:
        st = os.fstat(fd)
        _refuse_irregular(st.st_mode, shown, what)
        if st.st_size > limit:
            raise UsageError(f"{shown}: file is {st.st_size} bytes, over the {limit}-byte limit for {what}")
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                chunk = os.read(fd, min(CHUNK, limit + 1 - total))
            except OSError as exc:
                raise UsageError(f"{shown}: cannot read it ({_reason(exc)})") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UsageError(f"{shown}: file is over the {limit}-byte limit for {what}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _open_for_writing(path: str | os.PathLike[str], flags: int, what: str) -> int:
    shown = os.fspath(path)
    check_regular(path, what, missing_ok=True)
    try:
        fd = os.open(path, flags | os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads, or a socket
            raise UsageError(f"{shown}: is not a regular file; {what} must be a regular file") from None
        raise
    try:
        _refuse_irregular(os.fstat(fd).st_mode, shown, what)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: str | os.PathLike[str], what: str = "the results file") -> IO[bytes]:
    """A regular file opened for appending (created if missing). UsageError for a FIFO/device/socket; OSError
    when the place is not writable (the caller words that)."""
    return os.fdopen(_open_for_writing(path, os.O_APPEND, what), "ab")


@contextlib.contextmanager
def _atomic(path: str | os.PathLike[str], what: str, mode: str, encoding: str | None) -> Iterator[IO[Any]]:
    """A temporary file beside `path`, renamed over it only when the `with` body and the flush succeed: a full
    disk, `ulimit -f` or an exception leaves the old file (or none) and no partial one."""
    check_regular(path, what, missing_ok=True)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_write(path: str | os.PathLike[str], what: str = "a report file",
               encoding: str = "utf-8") -> contextlib.AbstractContextManager[IO[str]]:
    """A regular file written whole or not at all (`with open_write(p) as fh: ...`): written to a temporary file
    beside it and renamed over it at the end. UsageError for a FIFO/device/socket; OSError when the place is not
    writable or the disk is full (the caller words that)."""
    check_regular(path, what, missing_ok=True)  # refused at the call, before the caller renders anything
    return _atomic(path, what, "w", encoding)


def open_write_binary(path: str | os.PathLike[str],
                      what: str = "a report file") -> contextlib.AbstractContextManager[IO[bytes]]:
    check_regular(path, what, missing_ok=True)
    return _atomic(path, what, "wb", None)


def check_can_write(path: str | os.PathLike[str], what: str) -> None:
    """Refuse (UsageError) a place `path` cannot be written to, before any work, without touching the file."""
    shown = os.fspath(path)
    check_regular(path, what, missing_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".fp8doctor-", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"cannot write {what} to {shown}: {_reason(exc)}") from None
    os.close(fd)
    os.unlink(tmp)


def lock_exclusive(fh: IO[bytes], shown: str, holder: str) -> None:
    """Take an advisory exclusive lock on an open file, or say in one line that `holder` has it already."""
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(f"{shown} is being written by another {holder} right now; wait for it to finish or "
                         "choose another file") from None
    except OSError:
        pass  # a file system without locks (some NFS): write without one, as before


def stdout_cut_by_size_limit() -> bool:
    """True when stdout is a regular file that reached the `ulimit -f` size limit. Python ignores SIGXFSZ and its
    buffered stdout drops the EFBIG of the write after a short one: the output was cut without an error."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if soft == resource.RLIM_INFINITY:
        return False
    try:
        return stat.S_ISREG(os.fstat(1).st_mode) and os.lseek(1, 0, os.SEEK_CUR) >= soft
    except OSError:
        return False


def bounded(value: Any, depth: int = 0) -> Any:
    """A JSON value read from another program (a probe, a record) with every string, list and mapping cut to its
    bound and non-finite floats as None."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return None
    if isinstance(value, list):
        return [bounded(v, depth + 1) for v in value[:MAX_ITEMS]]
    if isinstance(value, dict):
        return {str(k)[:MAX_TEXT]: bounded(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
    return None
