"""How a child forked by the warm server (fp8doctor.runs.zygote) becomes its own process: a run of the pool, or a
process handed over by fp8doctor.runs.handoff (a launcher's rank, a launcher) that becomes `python ARGS`.

Both first become what a fresh interpreter started in their place would be: a session leader whose standard
streams are the given descriptors, whose whole environment is the given one (os.environ writes through to the C
environment), whose `tempfile` folder, working directory and torch thread count follow that environment, and whose
process group dies with fp8doctor (the lifeline).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import runpy
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import NoReturn

# Read by native code (not through os.environ) when the library loads; applied again in each child.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Command:
    """`python [-u] SCRIPT ARGS...` or `python [-u] -m MODULE ARGS...`: the forms launchers start."""

    module: str | None
    script: str | None
    argv: list[str]
    unbuffered: bool


def parse(args: list[str]) -> Command:
    """The interpreter's command line after the interpreter; ValueError for any other form (then: cold)."""
    args = [str(a) for a in args]
    unbuffered = False
    while args and args[0] == "-u":
        unbuffered = True
        args = args[1:]
    if len(args) >= 2 and args[0] == "-m":
        return Command(args[1], None, args[2:], unbuffered)
    if args and not args[0].startswith("-"):
        return Command(None, args[0], args, unbuffered)
    raise ValueError(f"not a form the warm server starts: python {' '.join(args)}")


def become(env: dict[str, str], cwd: str, stdio: tuple[int, int, int], name: str, lifeline_fd: int | None,
           close: tuple[int, ...]) -> None:
    """In the forked child, before anything of the run executes."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    with contextlib.suppress(OSError), open("/proc/self/comm", "w", encoding="ascii") as fh:
        fh.write(name)  # how `ps` and fp8doctor's tests tell a forked process from the server
    signal.signal(signal.SIGINT, signal.default_int_handler)  # what a fresh interpreter has
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    for fd in {*stdio, *close} - {0, 1, 2}:
        with contextlib.suppress(OSError):
            os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    import tempfile

    tempfile.tempdir = None  # next use reads this process's TMPDIR
    os.chdir(cwd or os.getcwd())
    apply_threads()
    if lifeline_fd is not None:
        from fp8doctor.system import lifeline

        os.environ[lifeline.ENV] = str(lifeline_fd)
        lifeline.guard_own_group()


def apply_threads() -> None:
    torch = sys.modules.get("torch")
    value = next((os.environ[v] for v in THREAD_VARS if os.environ.get(v)), None)
    if torch is not None and value and value.isdigit() and int(value) > 0:
        torch.set_num_threads(int(value))


def run_python(cmd: Command) -> NoReturn:
    """Run the command as `python` would run it in __main__, then leave as it would (atexit handlers, flushed
    streams, the exit status of SystemExit or 1 after a traceback; an uncaught Ctrl-C as SIGINT)."""
    from fp8doctor.runs import handoff

    handoff.served = True  # the rank script's own handoff call must not hand this process over again
    if cmd.unbuffered:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.reconfigure(write_through=True)  # type: ignore[union-attr]
    code = 0
    interrupted = False
    try:
        if cmd.module is not None:
            sys.argv = ["-m", *cmd.argv]
            sys.path[0] = os.getcwd()
            runpy.run_module(cmd.module, run_name="__main__", alter_sys=True)
        else:
            assert cmd.script is not None
            sys.argv = list(cmd.argv)
            sys.path[0] = os.path.dirname(os.path.abspath(cmd.script))
            runpy.run_path(cmd.script, run_name="__main__")
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        interrupted = True
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1
