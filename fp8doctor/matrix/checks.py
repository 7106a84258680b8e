"""Per-cell checks: pure functions from result dicts (fp8doctor.runs.spec's schema) to verdicts with numbers.

Tolerances are stated here and justified in docs/matrix.md (measured on CPU for torchao emulate; taken from
Transformer Engine's own test tolerances for TE, which cannot run on a CPU machine).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from fp8doctor.findings import Level
from fp8doctor.knowledge.divergence import tolerance
from fp8doctor.matrix.checkpoint import check_checkpoint
from fp8doctor.matrix.divergence import check_divergence, check_numerics, check_optimizer
from fp8doctor.matrix.layers import check_fp8_active, check_fp8_layers
from fp8doctor.matrix.verdict import Verdict
from fp8doctor.runs.spec import TE_RECIPES
from fp8doctor.verdicts import FAIL, PASS, SKIP, WARN

__all__ = ["Verdict", "check_cell", "check_fp8_active", "check_fp8_layers", "cell_status"]

# Max relative difference |loss_fp8 - loss_bf16| / |loss_bf16| allowed at any step.
LOSS_RTOL: dict[tuple[str, str], float] = {
    # torchao (emulate on CPU, 8 steps, tiny model, seeds 0-2, all entry paths): worst measured 4.2e-2 for
    # tensorwise (Trainer / `accelerate launch`, i.e. Accelerate's default Float8LinearConfig), 3.2e-3 rowwise,
    # 1.6e-3 rowwise_with_gw_hp; tolerances are about twice to three times the worst seen.
    ("torchao", "tensorwise"): 0.08,
    ("torchao", "rowwise"): 0.01,
    ("torchao", "rowwise_with_gw_hp"): 0.01,
    # Transformer Engine: TE's own test tolerances (knowledge/divergence.py: rtol 0.125 FP8, 0.25 NVFP4).
    **{("te", recipe): tolerance("te", recipe).rtol for recipe in TE_RECIPES},
}
DEFAULT_LOSS_RTOL = 0.125
# Native backend API vs the same recipe through Accelerate, same seed. Accelerate's own FP8 benchmarks require
# the two to be exactly equal: bit-identical is "ok"; a difference within the recipe's loss tolerance is a
# warning (same training, different numerics: see docs/matrix.md); beyond it, a failure.
# Only the Accelerator entry builds the same recipe config as the native cell. Trainer has its own LR schedule;
# `accelerate launch` with the default torchao recipe uses Accelerate's default Float8LinearConfig
# (pad_inner_dim=True), not the recipe's; the 2-process run's rank 0 is compared through its baseline instead.
AGREEMENT_ENTRIES = ("accelerator",)
# Failures that are limits of running on CPU, not of the user's GPU setup: (backend, recipe, error type, message
# substring, why). Such a cell still runs; when it fails exactly this way on CPU it is reported as skipped with
# the measured error, and when a later library version fixes it, it simply passes.
KNOWN_CPU_LIMITS: tuple[tuple[str, str, str, str, str], ...] = (
    ("torchao", "rowwise_with_gw_hp", "RuntimeError", "expected m1 and m2 to have the same dtype",
     "torchao's Float8Linear follows only the CUDA autocast state (it casts its input to "
     "torch.get_autocast_gpu_dtype()), so under Accelerate's bf16 autocast on CPU its high-precision grad-weight "
     "matmul mixes bf16 and fp32; a CUDA run takes the casting branch"),
)
CHECK_NAMES = (
    "finished",
    "loss_finite",
    "loss_falls",
    "loss_vs_bf16",
    "fp8_layers",
    "fp8_active",
    "native_agreement",
    "step_time_ratio",
    "optimizer",
    "divergence",
    "numerics",
    "checkpoint",
)


def losses_of(result: dict[str, Any]) -> list[float]:
    """Per-step losses as floats ("nan"/"inf" strings become float NaN/inf)."""
    out = []
    for v in result.get("losses") or []:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def _spec(result: dict[str, Any]) -> dict[str, Any]:
    return result.get("spec") or {}


def is_baseline(result: dict[str, Any]) -> bool:
    return _spec(result).get("backend") == "none"


def on_gpu(result: dict[str, Any]) -> bool:
    return str(result.get("device") or "").startswith("cuda")


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def known_cpu_limit(r: dict[str, Any]) -> str | None:
    """The explanation when this result is a known CPU-only failure (see KNOWN_CPU_LIMITS), else None."""
    err = r.get("error") or {}
    if r.get("outcome") != "raised" or on_gpu(r) or _spec(r).get("device", "cpu") not in (None, "cpu"):
        return None
    for backend, recipe, etype, needle, why in KNOWN_CPU_LIMITS:
        if (_spec(r).get("backend"), _spec(r).get("recipe"), err.get("type")) == (backend, recipe, etype) and \
                needle in str(err.get("message")):
            return why
    return None


def check_finished(r: dict[str, Any]) -> Verdict:
    outcome = r.get("outcome")
    if outcome == "finished":
        total = (r.get("timings_s") or {}).get("total")
        return Verdict("finished", Level.OK, "finished" + (f" in {total:.1f} s" if total else ""))
    if outcome == "skipped":
        return Verdict("finished", Level.SKIP, r.get("skip_reason") or "skipped")
    err = r.get("error") or {}
    limit = known_cpu_limit(r)
    if limit:
        return Verdict("finished", Level.SKIP, f"known CPU limit: {limit} (measured here: {err.get('type')}: "
                       f"{err.get('message')})")
    if outcome == "raised":
        where = f" at {err['where']}" if err.get("where") else ""
        return Verdict("finished", Level.FAIL, f"raised {err.get('type')}: {err.get('message')}{where}")
    if outcome == "crashed":
        return Verdict("finished", Level.FAIL, f"crashed ({err.get('signal') or err})")
    if outcome == "timed_out":
        return Verdict("finished", Level.FAIL, f"timed out after {_spec(r).get('timeout_s')} s")
    return Verdict("finished", Level.FAIL, f"unknown outcome {outcome!r}")


def check_loss_finite(r: dict[str, Any]) -> Verdict:
    results = [r] + [x for x in (r.get("ranks") or []) if isinstance(x, dict)]
    steps = _spec(r).get("steps")
    for i, res in enumerate(results):
        losses = losses_of(res)
        who = "" if i == 0 else f" (rank {i - 1})"
        if not losses:
            return Verdict("loss_finite", Level.FAIL, f"no loss recorded{who}")
        bad = [n for n, x in enumerate(losses, start=1) if not math.isfinite(x)]
        if bad:
            return Verdict("loss_finite", Level.FAIL, f"loss not finite at step {bad[0]}{who}: {losses[bad[0] - 1]}")
        if steps and len(losses) != steps:
            return Verdict("loss_finite", Level.FAIL, f"{len(losses)} losses recorded for {steps} steps{who}")
    n = len(losses_of(r))
    return Verdict("loss_finite", Level.OK, f"{n}/{n} steps finite" + (f" on {len(results) - 1} ranks" if
                                                                       len(results) > 1 else ""))


def check_loss_falls(r: dict[str, Any]) -> Verdict:
    losses = losses_of(r)
    if len(losses) < 2:
        return Verdict("loss_falls", Level.SKIP, "needs at least 2 steps")
    tail = losses[-min(3, len(losses) - 1):]
    last = sum(tail) / len(tail)
    change = (last - losses[0]) / abs(losses[0]) if losses[0] else math.inf
    detail = f"first {_fmt(losses[0])} -> last {len(tail)} mean {_fmt(last)} ({change:+.1%})"
    return Verdict("loss_falls", Level.OK if last < losses[0] else Level.FAIL, detail, change)


def max_rel_diff(a: list[float], b: list[float]) -> tuple[float, int]:
    """Max over steps of |a - b| / |b| and the (1-based) step where it occurs."""
    worst, at = 0.0, 0
    for n, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        d = abs(x - y) / abs(y) if y else abs(x - y)
        if not math.isfinite(d) or d > worst:
            worst, at = d, n
            if not math.isfinite(d):
                break
    return worst, at


def loss_rtol(backend: str, recipe: str) -> float:
    return LOSS_RTOL.get((backend, recipe), DEFAULT_LOSS_RTOL)


def check_vs_baseline(r: dict[str, Any], base: dict[str, Any] | None) -> Verdict:
    if base is None or base.get("outcome") != "finished":
        why = "no baseline result" if base is None else f"baseline {base.get('outcome')}"
        return Verdict("loss_vs_bf16", Level.SKIP, why)
    a, b = losses_of(r), losses_of(base)
    if not a or len(a) != len(b):
        return Verdict("loss_vs_bf16", Level.FAIL, f"{len(a)} FP8 losses vs {len(b)} baseline losses")
    tol = loss_rtol(_spec(r).get("backend", ""), _spec(r).get("recipe", ""))
    worst, at = max_rel_diff(a, b)
    detail = f"max rel diff {worst:.2e} at step {at} (tolerance {tol:g})"
    return Verdict("loss_vs_bf16", Level.OK if worst <= tol else Level.FAIL, detail, worst)


def check_native_agreement(r: dict[str, Any], native: dict[str, Any] | None) -> Verdict:
    entry = _spec(r).get("entry")
    if entry == "native":
        return Verdict("native_agreement", Level.SKIP, "this is the native cell")
    if entry not in AGREEMENT_ENTRIES:
        return Verdict("native_agreement", Level.SKIP, f"{entry} trains on its own schedule/shards; not comparable")
    if native is None or native.get("outcome") != "finished":
        why = "no native result" if native is None else f"native cell {native.get('outcome')}"
        return Verdict("native_agreement", Level.SKIP, why)
    a, b = losses_of(r), losses_of(native)
    if len(a) != len(b):
        return Verdict("native_agreement", Level.FAIL, f"{len(a)} losses vs {len(b)} native losses")
    worst, at = max_rel_diff(a, b)
    if worst == 0.0:
        return Verdict("native_agreement", Level.OK, "bit-identical to native", 0.0)
    tol = loss_rtol(_spec(r).get("backend", ""), _spec(r).get("recipe", ""))
    detail = f"not bit-identical to native: max rel diff {worst:.2e} at step {at}"
    if worst <= tol:
        return Verdict("native_agreement", Level.WARN, detail + " (Accelerate's FP8 benchmarks expect equality)",
                       worst)
    return Verdict("native_agreement", Level.FAIL, detail + f" (beyond the loss tolerance {tol:g})", worst)


def median_step_time(r: dict[str, Any]) -> float | None:
    times = [float(t) for t in r.get("step_times_s") or []]
    times = times[1:] if len(times) > 1 else times  # the first step pays for warm-up
    return statistics.median(times) if times else None


def check_step_time(r: dict[str, Any], base: dict[str, Any] | None) -> Verdict:
    if base is None or base.get("outcome") != "finished":
        return Verdict("step_time_ratio", Level.SKIP, "no finished baseline")
    mine, theirs = median_step_time(r), median_step_time(base)
    if not mine or not theirs:
        return Verdict("step_time_ratio", Level.SKIP, "no step times recorded")
    ratio = mine / theirs
    detail = f"FP8/bf16 median step time {ratio:.2f}x ({mine * 1e3:.1f} ms vs {theirs * 1e3:.1f} ms)"
    if not on_gpu(r):
        emu = " (torchao emulate)" if r.get("emulated") else ""
        return Verdict("step_time_ratio", Level.OK, detail + f"; informational on CPU{emu}", ratio)
    if ratio > 1.0:
        return Verdict("step_time_ratio", Level.WARN, detail + ": FP8 is slower than bf16 here", ratio)
    return Verdict("step_time_ratio", Level.OK, detail, ratio)


def check_cell(r: dict[str, Any], baseline: dict[str, Any] | None = None,
               native: dict[str, Any] | None = None) -> list[Verdict]:
    """Every check for one cell; a cell that did not finish gets only the `finished` verdict."""
    first = check_finished(r)
    if first.level is not Level.OK:
        return [first]
    out = [first, check_loss_finite(r), check_loss_falls(r)]
    if is_baseline(r):
        return out
    out += [
        check_vs_baseline(r, baseline),
        check_fp8_layers(r),
        check_fp8_active(r),
        check_native_agreement(r, native),
        check_step_time(r, baseline),
        check_optimizer(r),
        check_divergence(r, baseline),
        check_numerics(r),
        check_checkpoint(r),
    ]
    return out


def cell_status(verdicts: list[Verdict]) -> str:
    """One of fp8doctor.verdicts.CELL_STATUSES for one cell."""
    levels = {v.level for v in verdicts}
    if Level.FAIL in levels or Level.ERROR in levels:
        return FAIL
    if verdicts and verdicts[0].level is Level.SKIP:
        return SKIP
    return WARN if Level.WARN in levels else PASS
