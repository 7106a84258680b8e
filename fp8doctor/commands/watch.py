"""`fp8doctor watch [--timeout S] [--format F] -- CMD ARGS...`: run a training command and say whether FP8 ran."""

from __future__ import annotations

import argparse
import sys
from typing import Any

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
                   help="report format (json: CMD's stdout goes to stderr so stdout holds only the JSON)")
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
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    result = run_watch(cmd, args.timeout, stdout=sys.stderr if args.format == "json" else None)
    sys.stdout.write(render(result, args.format))
    return exit_code(result)
