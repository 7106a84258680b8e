"""The FP8 health checks of a matrix cell beyond its loss tolerance: `divergence` (loss and gradient norm against
the same entry's bf16 baseline, under the libraries' own test tolerances: fp8doctor.divergence), `optimizer`
(every trainable parameter is one the optimizer steps) and `numerics`
(the sampled per-layer FP8 numerics: layers below the SQNR threshold warn, named with the config to keep them in
bf16)."""

from __future__ import annotations

from typing import Any

from fp8doctor.divergence import judge
from fp8doctor.findings import Level
from fp8doctor.knowledge.divergence import tolerance
from fp8doctor.knowledge.optimizer_params import SENTENCE
from fp8doctor.matrix.verdict import Verdict
from fp8doctor.numerics import summary, unsampled_words
from fp8doctor.observe import DEEPSPEED_COPIES, fp8_weights_among


def check_divergence(r: dict[str, Any], base: dict[str, Any] | None) -> Verdict:
    if base is None or base.get("outcome") != "finished":
        why = "no baseline result" if base is None else f"baseline {base.get('outcome')}"
        return Verdict("divergence", Level.SKIP, why)
    spec = r.get("spec") or {}
    tol = tolerance(str(spec.get("backend", "")), spec.get("recipe"))
    level, detail, details = judge(r.get("losses") or [], base.get("losses") or [], r.get("grad_norms"),
                                   base.get("grad_norms"), tol)
    grad = details.get("grad_norm") or {}
    return Verdict("divergence", level, detail, grad.get("worst_rel"))


# Checks whose failure is what the installed releases do on the matrix's own plain entry path (Accelerate's default
# config), not a property of the user's setup: the report shows them as warnings and `env` judges the user's config.
LIBRARY_BEHAVIOUR_CHECKS = ("optimizer",)


def check_optimizer(r: dict[str, Any]) -> Verdict:
    """Parameters the run recorded as not held by its optimizer (`outside_optimizer`) never train, so the run is not
    the bf16 run's training whatever its numerics: a failure (knowledge/optimizer_params.py says when a release
    does this to the FP8 layers' weights)."""
    if "outside_optimizer" not in r:
        return Verdict("optimizer", Level.SKIP, f"not recorded ({DEEPSPEED_COPIES})")
    outside = [str(n) for n in r.get("outside_optimizer") or []]
    if not outside:
        return Verdict("optimizer", Level.OK, "every trainable parameter is held by the optimizer", 0)
    in_fp8 = len(fp8_weights_among(outside, [str(n) for n in r.get("fp8_layers") or []]))
    head = f"{SENTENCE}: " if in_fp8 else ""
    return Verdict("optimizer", Level.FAIL, f"{head}{len(outside)} trainable parameters ({in_fp8} of them FP8 "
                   f"layers' weights, e.g. {outside[0]}) are not held by the optimizer, so they never train (the "
                   "optimizer holds other Parameter objects than the prepared model's)", len(outside))


def numerics_of(r: dict[str, Any]) -> dict[str, Any] | None:
    """The cell's numerics summary (fp8doctor.numerics.summary), or None when none was sampled."""
    n = r.get("numerics")
    if not isinstance(n, dict) or not isinstance(n.get("layers"), dict):
        return None
    return summary(n["layers"], n.get("every"), n.get("unsampled"))


def check_numerics(r: dict[str, Any]) -> Verdict:
    n = numerics_of(r)
    if n is None:
        why = "not sampled (--numerics-every 0, or compiled)"
        return Verdict("numerics", Level.SKIP, why)
    rows = {k: v for k, v in n["layers"].items() if isinstance(v, dict)}
    sampled = {k: v for k, v in rows.items() if v.get("samples")}
    errors = sorted({str(v["error"]) for v in rows.values() if v.get("error")})
    sqnr = [(v["sqnr_db_min"], k) for k, v in sampled.items() if isinstance(v.get("sqnr_db_min"), (int, float))]
    under = [(v.get("input_underflow_max") or 0.0, k) for k, v in sampled.items()]
    parts = [f"{len(sampled)}/{len(rows) + len(n['unsampled'])} FP8 layers sampled every {n['every']} calls"]
    if n["unsampled"]:
        parts.append(unsampled_words(n["unsampled"]))
    if sqnr:
        parts.append(f"min SQNR {min(sqnr)[0]:.1f} dB ({min(sqnr)[1]})")
    if under:
        parts.append(f"max input underflow {100 * max(under)[0]:.2f}% ({max(under)[1]})")
    if errors:
        parts.append("not sampled: " + "; ".join(errors)[:300])
    worst = min(sqnr)[0] if sqnr else None
    if not sampled:
        return Verdict("numerics", Level.SKIP, "; ".join(parts))
    if n["candidates"]:
        parts.append(f"below {n['threshold_db']:g} dB ({n['source']}): {', '.join(n['candidates'])}; keep them in "
                     f"bf16 with {next(iter(n['config'].values()))}")
        return Verdict("numerics", Level.WARN, "; ".join(parts), worst)
    return Verdict("numerics", Level.OK, "; ".join(parts), worst)
