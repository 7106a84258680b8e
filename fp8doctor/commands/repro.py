"""`fp8doctor repro`: reproduce the mixed-precision ValueError and prove the fixes with real short runs."""

from __future__ import annotations

import argparse
from typing import Any

from fp8doctor.commands.options import RUN_TIMEOUT_HELP
from fp8doctor.runs import warm


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "repro",
        help="reproduce the FP8 mixed-precision ValueError (or silent bf16) and prove the fixes with real runs",
        description="Run the reference report's buggy paths (an FP8 recipe injected into a bf16 Accelerator) and "
        "the fixed paths (Accelerator, Trainer, accelerate launch, 2 processes, native backend API) on a tiny "
        "built-in Llama in isolated child processes; classify each as reproduced, silent-bf16, fp8-active or "
        "not-applicable, and print the fix that worked here.",
    )
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="your LLaMA-Factory training YAML and/or Accelerate config YAML (repeatable); its settings "
                        "are run on the tiny model next to the built-in paths")
    p.add_argument("--backend", choices=("auto", "te", "torchao"), default="auto",
                   help="FP8 backend for the runs (default auto: the config's, else TE when usable, else torchao)")
    p.add_argument("--format", choices=("text", "md", "json"), default="text", help="output format")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help=RUN_TIMEOUT_HELP)
    p.add_argument("--steps", type=int, default=6, metavar="N", help="training steps per run")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="runs in parallel (default: up to 2)")
    warm.add_cold_argument(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    warm.prefer_cold(args.cold)
    from fp8doctor.needs import require
    from fp8doctor.repro import render, run_repro
    from fp8doctor.system import limits

    limits.check_steps(args.steps)
    limits.check_timeout(args.timeout)
    limits.check_workers(args.workers)
    require("repro")
    report = run_repro(args.config, backend=args.backend, steps=args.steps, timeout_s=args.timeout,
                       workers=args.workers)
    print(render(report, args.format), end="")
    return report.exit_code()
