"""`fp8doctor report` from parsed arguments to exit code (the CLI module only declares the options)."""

from __future__ import annotations

import sys
from typing import Any

from fp8doctor.redact import redact
from fp8doctor.render.controls import escape_controls
from fp8doctor.report.build import Options, build
from fp8doctor.system import limits
from fp8doctor.system.errors import UsageError


def main(args: Any) -> int:
    cmd = list(args.watch_cmd or [])
    if args.watch and not cmd:
        raise UsageError("--watch needs the command to watch after `--`, e.g. `fp8doctor report --watch -- python "
                         "train.py`")
    if cmd and not args.watch:
        raise UsageError(f"unexpected argument {cmd[0]!r}; to watch a command use `--watch -- CMD ...`")
    limits.check_workers(args.workers)
    limits.check_steps(args.steps)
    limits.check_timeout(args.timeout)
    limits.check_timeout(args.command_timeout, "--command-timeout")
    if args.quick and args.full:
        raise UsageError("choose one of --quick and --full")
    from fp8doctor.configs import load_config

    for path in args.config or []:
        load_config(path)  # a bad --config is bad usage now (exit 2), not an error part minutes later
    if args.model:
        from fp8doctor.inspect.model import config_path, read_config

        read_config(config_path(args.model))  # likewise a bad --model
    elif args.gpu:
        raise UsageError("--gpu estimates the speed-up of --model's layers: give --model PATH too")
    report = build(Options(out_dir=args.out_dir, steps=args.steps, workers=args.workers, quick=args.quick,
                           full=args.full, watch_cmd=cmd, watch_timeout=args.command_timeout,
                           run_timeout=args.timeout, config_files=list(args.config or []),
                           model=args.model, gpu=args.gpu))
    print(escape_controls(report.data["verdict"]))
    for part in report.data["parts"]:
        print(f"  {part['status']:5} {part['title']}: {escape_controls(part['summary']['ran'] or '-')}")
    print("wrote:")
    for path in report.files:
        print(f"  {escape_controls(redact(path))}")
    sys.stdout.flush()
    return report.exit_code
