"""Divergence of an FP8 run from the same run in bf16, step by step, under knowledge/divergence.py's tolerances:
a loss outside the tolerance, or a NaN/inf loss or gradient norm where bf16 had a finite one, fails; a gradient
norm outside the tolerance warns (the loss is what training optimises; a gradient norm that strays first is an
early sign). Pure functions on plain lists, shared by `matrix` (its `divergence` check) and `watch --baseline`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from fp8doctor.findings import Level
from fp8doctor.knowledge.divergence import Tolerance


def as_floats(values: list[Any] | None) -> list[float]:
    """Floats from a recorded series ("nan"/"inf" strings and unreadable values become NaN)."""
    out = []
    for v in values or []:
        try:
            out.append(float(v))
        except (TypeError, ValueError, OverflowError):
            out.append(math.nan)
    return out


@dataclass(frozen=True)
class SeriesDiff:
    what: str
    compared: int  # steps compared (both finite up to the first non-finite one)
    worst_rel: float  # max over compared steps of |fp8 - bf16| / |bf16|
    worst_at: int  # its step (1-based); 0 when nothing was compared
    first_miss: int | None  # first step outside the tolerance
    nonfinite_at: int | None  # first step where FP8 was NaN/inf and bf16 was finite
    baseline_nonfinite_at: int | None  # first step where bf16 itself was NaN/inf (comparison stops there)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(values: list[Any], reference: list[Any], tol: Tolerance, what: str) -> SeriesDiff:
    a, b = as_floats(values), as_floats(reference)
    worst, worst_at, miss, nonfinite, base_bad, n = 0.0, 0, None, None, None, 0
    for step, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if not math.isfinite(y):
            base_bad = step
            break
        if not math.isfinite(x):
            nonfinite = step
            break
        n = step
        rel = abs(x - y) / abs(y) if y else abs(x - y)
        if rel > worst or worst_at == 0:
            worst, worst_at = rel, step
        if miss is None and not tol.allows(x, y):
            miss = step
    return SeriesDiff(what, n, worst, worst_at, miss, nonfinite, base_bad)


def _words(d: SeriesDiff, a: list[Any], b: list[Any]) -> str:
    if d.nonfinite_at:
        return f"{d.what} not finite at step {d.nonfinite_at} ({as_floats(a)[d.nonfinite_at - 1]}) where bf16 was"
    text = f"{d.what} max rel diff {d.worst_rel:.2e} at step {d.worst_at} over {d.compared} steps"
    if d.first_miss:
        x, y = as_floats(a)[d.first_miss - 1], as_floats(b)[d.first_miss - 1]
        text += f"; outside the tolerance from step {d.first_miss} ({x:.4g} vs bf16 {y:.4g})"
    if d.baseline_nonfinite_at:
        text += f"; bf16 itself not finite at step {d.baseline_nonfinite_at}"
    return text


def judge(losses: list[Any], base_losses: list[Any], grad_norms: list[Any] | None,
          base_grad_norms: list[Any] | None, tol: Tolerance) -> tuple[Level, str, dict[str, Any]]:
    """(level, one sentence, details) for an FP8 run against its bf16 baseline."""
    if not losses or not base_losses:
        return Level.SKIP, "no losses to compare" if base_losses else "the bf16 baseline recorded no losses", {}
    loss = compare(losses, base_losses, tol, "loss")
    details: dict[str, Any] = {"tolerance": {"rtol": tol.rtol, "atol": tol.atol, "source": tol.source},
                               "loss": loss.to_dict()}
    parts = [_words(loss, losses, base_losses)]
    grad = None
    if grad_norms and base_grad_norms:
        grad = compare(grad_norms, base_grad_norms, tol, "grad norm")
        details["grad_norm"] = grad.to_dict()
        parts.append(_words(grad, grad_norms, base_grad_norms))
    else:
        parts.append("grad norm not compared (" + ("the bf16 baseline" if grad_norms else "this run")
                     + " recorded none)")
    if len(as_floats(losses)) != len(as_floats(base_losses)):
        parts.append(f"{len(losses)} FP8 vs {len(base_losses)} bf16 losses: the shorter length compared")
    text = "; ".join(parts) + f" (tolerance {tol.words()}: {tol.source})"
    if loss.nonfinite_at or loss.first_miss or (grad and grad.nonfinite_at):
        return Level.FAIL, text, details
    if grad and grad.first_miss:
        return Level.WARN, text, details
    return Level.OK, text, details
