"""The `checkpoint` check: the trained FP8 model's weights, saved and loaded as a user exports them, load strictly
into the same model without FP8 and hold the same values (runs/entries/checkpoint.py records the round trip)."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Level
from fp8doctor.matrix.verdict import Verdict


def check_checkpoint(r: dict[str, Any]) -> Verdict:
    c = r.get("checkpoint")
    if not isinstance(c, dict):
        return Verdict("checkpoint", Level.SKIP, "not recorded for this entry (the round trip runs in the "
                       "accelerator, multiproc and launch entries)")
    if c.get("skipped"):
        return Verdict("checkpoint", Level.SKIP, str(c["skipped"]))
    for step in ("save", "load"):
        if c.get(f"{step}_error"):
            return Verdict("checkpoint", Level.FAIL, f"the trained FP8 model's state dict fails to {step}: "
                           f"{c[f'{step}_error']}")
    missing, unexpected = int(c.get("missing_count") or 0), int(c.get("unexpected_count") or 0)
    if missing:
        return Verdict("checkpoint", Level.FAIL, f"{missing} weights of the model without FP8 are not in the FP8 "
                       f"model's state dict, e.g. {', '.join(c.get('missing') or [])[:200]}", missing)
    diff = c.get("max_abs_diff")
    if isinstance(diff, (int, float)) and diff > 0:
        return Verdict("checkpoint", Level.FAIL, f"the loaded weights differ from the FP8 model's by up to {diff:.3g}",
                       diff)
    if unexpected:
        return Verdict("checkpoint", Level.WARN, f"loads into the model without FP8 only with strict=False: "
                       f"{unexpected} extra entries, e.g. {', '.join(c.get('unexpected') or [])[:200]}", unexpected)
    return Verdict("checkpoint", Level.OK, f"saved ({c.get('bytes')} bytes) and loaded strictly into the model "
                   "without FP8, weights identical", 0)
