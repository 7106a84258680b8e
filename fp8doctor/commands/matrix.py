"""`fp8doctor matrix`: short FP8 runs over backend x recipe x entry path, each checked against bf16."""

from __future__ import annotations

import argparse
from typing import Any

from fp8doctor.commands.options import RUN_TIMEOUT_HELP
from fp8doctor.knowledge.numerics import DEFAULT_EVERY
from fp8doctor.runs import warm
from fp8doctor.runs.spec import ENTRIES, SIZES, TE_RECIPES, TORCHAO_RECIPES


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "matrix",
        help="run short FP8 trainings over backend x recipe x entry path and check each against bf16",
        description="Run a matrix of short FP8 trainings on the built-in tiny model, each checked: finished, "
        "loss finite and falling, loss near the bf16 baseline, FP8 layers present and active, native vs "
        "Accelerate agreement, speed vs bf16, loss and gradient-norm divergence under the libraries' own test "
        "tolerances, per-layer FP8 numerics. Cells this machine cannot run are listed as skipped with the reason.",
    )
    p.add_argument("--backend", action="append", choices=("te", "torchao"),
                   help="FP8 backend, repeatable (default: both)")
    p.add_argument("--recipe", action="append", metavar="RECIPE",
                   help=f"recipe, repeatable (default: all of the chosen backends'); torchao: "
                        f"{', '.join(TORCHAO_RECIPES)}; te: {', '.join(TE_RECIPES)}")
    p.add_argument("--entry", action="append", choices=ENTRIES,
                   help="entry path, repeatable (default: all); fsdp2 and deepspeed start 2 ranks with that "
                        "Accelerate plugin (gloo on CPU; deepspeed is skipped where it cannot run, with the reason)")
    p.add_argument("--compile", action="store_true",
                   help="add each cell again under torch.compile of the prepared FP8 model, compared with a "
                        "compiled bf16 baseline (backend inductor on GPUs, aot_eager on CPU)")
    p.add_argument("--numerics-every", type=int, default=DEFAULT_EVERY, metavar="K",
                   help="sample each FP8 layer's numerics (torchao, TE Linear; amax, underflow, saturation, SQNR "
                        "against the matmul in high precision) every K of its forward calls"
                        f" (default {DEFAULT_EVERY}; 0: off)")
    p.add_argument("--steps", type=int, default=8, metavar="N", help="training steps per run")
    p.add_argument("--size", choices=SIZES, default="tiny", help="built-in model size")
    p.add_argument("--seed", type=int, action="append", metavar="N", help="seed, repeatable (default: 0)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="runs in parallel (one GPU per worker on GPUs)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help=RUN_TIMEOUT_HELP)
    warm.add_cold_argument(p)
    p.add_argument("--out", metavar="FILE.jsonl",
                   help="results file, one JSON line per cell (default reports/fp8doctor-matrix-<time>.jsonl)")
    p.add_argument("--resume", action="store_true", help="skip cells already measured in --out")
    p.add_argument("--format", choices=("text", "md", "json"), default="text", help="output format")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    warm.prefer_cold(args.cold)
    from fp8doctor.matrix.command import main
    from fp8doctor.needs import require

    require("matrix")
    return main(args)
