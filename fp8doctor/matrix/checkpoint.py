"""The `checkpoint` check: the trained FP8 model's weights, saved and loaded as a user exports them, load strictly
into the same model without FP8 and hold the same values (runs/entries/checkpoint.py records the round trip). A
result is untrusted input (a resumed --out file): fields of the wrong type read as absent."""

from __future__ import annotations

import math
from typing import Any

from fp8doctor.findings import Level
from fp8doctor.matrix.verdict import Verdict


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _names(value: Any) -> str:
    return ", ".join(str(n) for n in value[:3]) if isinstance(value, list) else ""


def check_checkpoint(r: dict[str, Any]) -> Verdict:
    c = r.get("checkpoint")
    if not isinstance(c, dict):
        return Verdict("checkpoint", Level.SKIP, "not recorded (the round trip runs after training in the "
                       "accelerator, multiproc and launch entries)")
    if c.get("skipped"):
        return Verdict("checkpoint", Level.SKIP, str(c["skipped"]))
    for step in ("save", "load", "compare"):
        if c.get(f"{step}_error"):
            return Verdict("checkpoint", Level.FAIL, f"the trained FP8 model's state dict fails to {step}: "
                           f"{str(c[f'{step}_error'])[:500]}")
    missing, unexpected = _count(c.get("missing_count")), _count(c.get("unexpected_count"))
    if missing:
        return Verdict("checkpoint", Level.FAIL, f"{missing} weights of the model without FP8 are not in the FP8 "
                       f"model's state dict, e.g. {_names(c.get('missing'))}", missing)
    diff = c.get("max_abs_diff")
    if isinstance(diff, str) or (isinstance(diff, (int, float)) and (not math.isfinite(diff) or diff > 0)):
        return Verdict("checkpoint", Level.FAIL, f"the loaded weights differ from the FP8 model's by up to {diff}",
                       diff if isinstance(diff, (int, float)) else None)
    if not _count(c.get("compared")) or not isinstance(diff, (int, float)):
        return Verdict("checkpoint", Level.WARN, "loaded, but no weight was compared with the FP8 model's")
    if unexpected:
        return Verdict("checkpoint", Level.WARN, f"loads into the model without FP8 only with strict=False: "
                       f"{unexpected} extra entries, e.g. {_names(c.get('unexpected'))}", unexpected)
    return Verdict("checkpoint", Level.OK, f"saved ({c.get('bytes')} bytes) and loaded strictly into the model "
                   f"without FP8, {c['compared']} weights identical", 0)
