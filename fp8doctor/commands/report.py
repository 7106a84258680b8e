"""`fp8doctor report`: env + repro + matrix into one Markdown bug-report file (+ JSON twin, loss plot)."""

from __future__ import annotations

import argparse
from typing import Any

from fp8doctor.commands.options import COMMAND_TIMEOUT_HELP, RUN_TIMEOUT_HELP
from fp8doctor.knowledge.roofline import gpu_names
from fp8doctor.runs import warm


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="env + repro + matrix into reports/fp8doctor-report-<time>.md (+ .json, loss plot)",
        description="Write one Markdown file to attach to an FP8 bug report, with its JSON twin: a verdict, the "
        "environment findings, the repro table, the FP8 matrix and loss curves, versions and the redacted "
        "environment. Everything after `--` is a command to watch (with --watch). Progress goes to stderr: a bar on "
        "a terminal, else one line per finished run and part.",
    )
    p.add_argument("--out-dir", default="reports", metavar="DIR", help="folder for the report files")
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="your training config (LLaMA-Factory YAML, Accelerate config, DeepSpeed or TrainingArguments "
                        "JSON), repeatable: linted as `fp8doctor env --config` does, and run by the repro")
    p.add_argument("--model", metavar="PATH",
                   help="your model's folder or config.json: adds `fp8doctor inspect --model`'s layer table (built on "
                        "the meta device, nothing downloaded)")
    p.add_argument("--gpu", choices=gpu_names(), help="with --model: estimate the FP8 speed-up on this GPU")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="training steps per run (default: 8; 6 with --quick)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="runs in parallel")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help=RUN_TIMEOUT_HELP)
    warm.add_cold_argument(p)
    p.add_argument("--quick", action="store_true", help="a smaller matrix: tensorwise/current, native + Accelerator")
    p.add_argument("--full", action="store_true", help="the whole matrix: every recipe through every entry path")
    p.add_argument("--watch", action="store_true", help="also run `fp8doctor watch` on the command after `--`")
    p.add_argument("--command-timeout", type=float, default=600.0, metavar="S", help=COMMAND_TIMEOUT_HELP)
    p.add_argument("watch_cmd", nargs="*", metavar="-- CMD", help="the command to watch (after `--`)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    warm.prefer_cold(args.cold)
    from fp8doctor.needs import require
    from fp8doctor.report.command import main

    require("report")
    return main(args)
