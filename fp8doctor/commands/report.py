"""`fp8doctor report`: env + repro + matrix into one Markdown bug-report file (+ JSON twin, loss plot)."""

from __future__ import annotations

import argparse
from typing import Any

from fp8doctor.runs import warm


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="env + repro + matrix into reports/fp8doctor-report-<time>.md (+ .json, loss plot)",
        description="Write one Markdown file to attach to an FP8 bug report, with its JSON twin: a verdict, the "
        "environment findings, the repro table, the FP8 matrix and loss curves, versions and the redacted "
        "environment. Everything after `--` is a command to watch (with --watch).",
    )
    p.add_argument("--out-dir", default="reports", help="folder for the report files (default reports/)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default 8; 6 with --quick)")
    p.add_argument("--workers", type=int, default=2, help="matrix cells run in parallel (default 2)")
    warm.add_cold_argument(p)
    p.add_argument("--quick", action="store_true", help="a smaller matrix: tensorwise/current, native + Accelerator")
    p.add_argument("--full", action="store_true", help="the whole matrix: every recipe through every entry path")
    p.add_argument("--watch", action="store_true", help="also run `fp8doctor watch` on the command after `--`")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for the watched command")
    p.add_argument("watch_cmd", nargs="*", metavar="-- CMD", help="the command to watch (after `--`)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    warm.prefer_cold(args.cold)
    from fp8doctor.needs import require
    from fp8doctor.report.command import main

    require("report")
    return main(args)
