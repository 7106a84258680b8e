"""Classify one run's result dict into a word of fp8doctor.verdicts.RUN_VERDICTS.

Pure functions on plain dicts (the schema in fp8doctor.runs.spec), so they are tested on hand-written results.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from fp8doctor.verdicts import BF16_BASELINE, FAILED, FP8_ACTIVE, NOT_APPLICABLE, REPRODUCED, RUN_VERDICTS, not_fp8_word

VERDICTS = RUN_VERDICTS

# Accelerate's "FP8 handler without mixed_precision='fp8'" ValueError, in its known wordings:
#   >= 1.4: "Passing in an FP8 configuration requires setting `mixed_precision='fp8'`."
#   <= 1.3: "Passing in a FP8RecipeKwargs object requires setting `mixed_precision='fp8'`."
_FP8_MIXED_PRECISION_ERROR = re.compile(
    r"passing in an? [`'\"]?(fp8 configuration|fp8\w*kwargs|\w*recipe\w*)\b.*?"
    r"requires\b.*?mixed_precision\s*=\s*[`'\"]*fp8",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class Verdict:
    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def is_fp8_mixed_precision_error(error: dict[str, Any] | None) -> bool:
    if not error or error.get("type") != "ValueError":
        return False
    return bool(_FP8_MIXED_PRECISION_ERROR.search(str(error.get("message", ""))))


def layer_count(result: dict[str, Any]) -> str:
    return f"{len(result.get('fp8_layers') or [])}/{len(result.get('eligible_layers') or [])}"


def _mixed_precision(result: dict[str, Any]) -> str | None:
    acc = result.get("accelerator") or {}
    return acc.get("mixed_precision")


def classify(result: dict[str, Any]) -> Verdict:
    outcome = result.get("outcome")
    error = result.get("error") or {}
    if outcome == "skipped":
        return Verdict(NOT_APPLICABLE, result.get("skip_reason") or "skipped")
    if outcome == "raised":
        where = error.get("where") or "?"
        if is_fp8_mixed_precision_error(error):
            user = f" (called from {error['user_where']})" if error.get("user_where") else ""
            return Verdict(REPRODUCED, f"ValueError at {where}{user}: {error.get('message')}")
        return Verdict(FAILED, f"{error.get('type', 'error')} at {where}: {error.get('message', '')}")
    if outcome == "crashed":
        what = error.get("signal") or error.get("message") or "no result"
        return Verdict(FAILED, f"the run crashed ({what})")
    if outcome == "timed_out":
        return Verdict(FAILED, error.get("message") or "the run timed out")
    if outcome != "finished":
        return Verdict(FAILED, f"unknown outcome {outcome!r}")
    losses = result.get("losses") or []
    if any(isinstance(v, str) for v in losses):
        return Verdict(FAILED, f"loss is not finite: {losses}")
    backend = (result.get("spec") or {}).get("backend")
    mp = _mixed_precision(result)
    mp_text = f"mixed_precision={mp!r}" if mp is not None else "no Accelerator"
    if backend == "none":
        return Verdict(BF16_BASELINE, f"bf16 baseline ({mp_text})")
    if result.get("fp8_active"):
        fwd = (result.get("forwards") or {}).get("fp8_module_forwards", 0)
        emu = ", torchao emulate=True" if result.get("emulated") else ""
        return Verdict(FP8_ACTIVE, f"{layer_count(result)} layers FP8, {fwd} FP8 forwards ({mp_text}{emu})")
    if not result.get("fp8_layers"):
        return Verdict(not_fp8_word(mp), f"trained without error but no FP8 layer: {layer_count(result)} eligible "
                                           f"layers converted ({mp_text})")
    return Verdict(not_fp8_word(mp), f"FP8 layers exist ({layer_count(result)}) but FP8 was not active in forward "
                                  f"({mp_text})")


def verdict_of(result: dict[str, Any]) -> str:
    return classify(result).name
