"""`fp8doctor watch [--timeout S] [--format F] -- CMD ARGS...`: run a training command and say whether FP8 ran."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fp8doctor import limits, safeio
from fp8doctor.errors import UsageError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "watch",
        help="run a training command and report what FP8 really did inside it",
        description="Run CMD unchanged with an observer injected into every Python process it starts "
        "(accelerate launch and torchrun ranks included) and report, per rank, whether FP8 was active, "
        "silently replaced by bf16, or raised, with the fix. Exit code: CMD's own failure (124 on timeout, "
        "128+N when killed by signal N), else 1 if FP8 was not active, 0 if it was; 2 for bad usage or a "
        "command that cannot be found.",
    )
    p.add_argument("--timeout", type=float, metavar="S", help="stop the whole command after S seconds")
    p.add_argument("--format", choices=("text", "md", "json"), default="text",
                   help="report format (md and json: CMD's stdout goes to stderr, so that stdout holds only the "
                        "report and `> report.md` captures it cleanly)")
    p.add_argument("--output", metavar="FILE",
                   help="write the report to FILE instead of stdout; CMD's output is left where it was")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to watch")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from fp8doctor.watch import render, run_watch
    from fp8doctor.watch.runner import exit_code

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("no command to watch: usage `fp8doctor watch [options] -- CMD ARGS...`")
    limits.check_timeout(args.timeout)
    if args.output:
        _write(args.output, "")  # refused now, not after a long training
    # A machine-readable report on stdout must not be interleaved with the command's own output.
    shared = args.format in ("md", "json") and not args.output
    result = run_watch(cmd, args.timeout, stdout=sys.stderr if shared else None)
    text = render(result, args.format)
    if args.output:
        try:
            _write(args.output, text)
        except UsageError:
            sys.stdout.write(text)  # the run is not lost
            raise
    else:
        sys.stdout.write(text)
    return exit_code(result)


def _write(path: str, text: str) -> None:
    try:
        with safeio.open_write(path, "--output") as fh:
            fh.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
