"""Roofline estimate of one Linear's training time (forward + both backward GEMMs) in bf16 and in FP8, per GPU.

The model is torchao's float8 roofline (torchao 0.18, `torchao/testing/training/roofline_utils.py`, held against it
by tests/test_inspect_roofline.py): each GEMM takes max(FLOPs / achievable peak, bytes / achievable bandwidth,
launch overhead); FP8 adds the memory-bound casts of input, weight and grad_output (no fusion with the previous
op). Per-tensor dynamic scaling ("tensorwise"): one amax read, then a cast that writes the row- and column-major
copies (the weight's in two kernels). MXFP8: two casts (dim0, dim1) per tensor and 1/32 more GEMM reads for the
scales. GPU peaks come from gpus.json, each with its source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

BF16_BYTES = 2
FP8_BYTES = 1
MX_BLOCK = 32
RECIPES = ("tensorwise", "mxfp8")


@dataclass(frozen=True)
class Spec:
    """What the roofline needs of one GPU."""

    bf16_flops: float
    fp8_flops: float
    memory_bytes_per_s: float
    gemm_efficiency: float
    memory_efficiency: float
    launch_s: float


@cache
def table() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("gpus.json")).read_text())


def gpu_names() -> tuple[str, ...]:
    return tuple(table()["gpus"])


def spec(gpu: str) -> Spec:
    row, eff = table()["gpus"][gpu], table()["efficiency"]
    return Spec(row["bf16_flops"], row["fp8_flops"], row["memory_bytes_per_s"], eff["gemm"], eff["memory"],
                eff["launch_overhead_s"])


def _memory_s(s: Spec, nbytes: float) -> float:
    return max(nbytes / (s.memory_bytes_per_s * s.memory_efficiency), s.launch_s)


def gemm_s(s: Spec, m: int, k: int, n: int, fp8: bool, mx: bool = False) -> float:
    """One (m x k) @ (k x n) GEMM with a bf16 output."""
    reads = m * k + k * n
    if mx:
        reads += reads // MX_BLOCK
    compute = 2 * m * k * n / ((s.fp8_flops if fp8 else s.bf16_flops) * s.gemm_efficiency)
    nbytes = reads * (FP8_BYTES if fp8 else BF16_BYTES) + m * n * BF16_BYTES
    return max(compute, nbytes / (s.memory_bytes_per_s * s.memory_efficiency), s.launch_s)


def _three_gemms(s: Spec, m: int, k: int, n: int, fp8: bool, mx: bool = False) -> float:
    return gemm_s(s, m, k, n, fp8, mx) + gemm_s(s, m, n, k, fp8, mx) + gemm_s(s, k, m, n, fp8, mx)


def cast_s(s: Spec, m: int, k: int, n: int, recipe: str) -> float:
    """The FP8 casts of input (m x k), weight (k x n) and grad_output (m x n) over forward and backward."""
    cast = BF16_BYTES + FP8_BYTES  # read bf16, write fp8, per element
    total = 0.0
    for numel, is_weight in ((m * k, False), (k * n, True), (m * n, False)):
        if recipe == "tensorwise":
            kernels = [BF16_BYTES * numel, 0]  # amax stage 1 (read); stage 2 is tiny
            kernels += [cast * numel] * 2 if is_weight else [(BF16_BYTES + 2 * FP8_BYTES) * numel]
        elif recipe == "mxfp8":
            kernels = [cast * numel, cast * numel]
        else:
            raise ValueError(f"unknown recipe {recipe!r}")
        total += sum(_memory_s(s, b) for b in kernels)
    return total


def linear_s(s: Spec, tokens: int, in_features: int, out_features: int, recipe: str | None) -> float:
    """Training time of one Linear on `tokens` rows: bf16 when recipe is None, else FP8 GEMMs plus casts."""
    m, k, n = tokens, in_features, out_features
    if recipe is None:
        return _three_gemms(s, m, k, n, fp8=False)
    return _three_gemms(s, m, k, n, fp8=True, mx=recipe == "mxfp8") + cast_s(s, m, k, n, recipe)


def attention_s(s: Spec, batch: int, seq: int, width: int, layers: int) -> float:
    """The attention score and context matmuls (not Linear layers), causal, forward + backward, bf16 either way."""
    flops = 3 * 2 * 2 * batch * seq * seq * width * layers / 2
    return flops / (s.bf16_flops * s.gemm_efficiency)
