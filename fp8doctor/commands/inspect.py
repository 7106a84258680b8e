"""`fp8doctor inspect --model PATH`: FP8 coverage and estimated speed-up of the user's own model, from its config."""

from __future__ import annotations

import argparse
from typing import Any

from fp8doctor.knowledge.roofline import gpu_names


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "inspect",
        help="which of your model's Linear layers FP8 takes (and why not), FLOP coverage, estimated speed-up",
        description="Build your model from its config on the meta device (no weights read, nothing downloaded, no "
        "remote code) and list every Linear layer with its shape, whether each FP8 path (Accelerate + torchao, "
        "torchao, Accelerate + TE, TE MXFP8) takes it and why not, the share of Linear FLOPs in FP8, and with "
        "--gpu a roofline estimate of the FP8 speed-up per layer class and per step.",
    )
    p.add_argument("--model", required=True, metavar="PATH",
                   help="a Hugging Face model folder (its config.json is read) or a config.json")
    p.add_argument("--gpu", choices=gpu_names(), help="estimate the speed-up on this GPU (default: no estimate)")
    p.add_argument("--batch", type=int, default=4, metavar="N", help="sequences per micro-batch per GPU")
    p.add_argument("--seq-len", type=int, default=2048, metavar="N", help="tokens per sequence")
    p.add_argument("--format", choices=("text", "md", "json"), default="text", help="output format")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from fp8doctor.inspect.command import main

    return main(args)
