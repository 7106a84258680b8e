"""After training, the FP8 model's weights saved and loaded back as a user exports them for inference: the state
dict through `torch.save` and `torch.load` (torch's own default `weights_only`), loaded into the same model built
without FP8. Records what failed (save, load, compare), the missing and unexpected keys and the largest difference
between the loaded weights and the FP8 model's own high-precision values. The trained model is only read.

Not for the sharded entries: their state dict holds shards (DTensor) that a full save must gather first."""

from __future__ import annotations

import io
import math
from typing import Any

from fp8doctor.runs.spec import SHARDED_ENTRIES, RunSpec

MAX_NAMES = 32


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:500]}"


def round_trip(spec: RunSpec, model: Any) -> dict[str, Any]:
    """The result's "checkpoint" (runs/spec.py) for the trained, unwrapped `model`."""
    if spec.entry in SHARDED_ENTRIES:
        return {"skipped": "sharded: a full state dict must gather the shards first"}
    import torch

    from fp8doctor.numerics import dense
    from fp8doctor.runs.model import build_model

    out: dict[str, Any] = {}
    buffer = io.BytesIO()
    step = "save"
    try:
        own = model.state_dict()
        torch.save(own, buffer)
        out["bytes"] = buffer.tell()
        buffer.seek(0)
        step = "load"
        state = torch.load(buffer, map_location="cpu")
        plain = build_model(spec.size, spec.seed)
        keys = plain.load_state_dict(state, strict=False)
        out.update(missing=sorted(keys.missing_keys)[:MAX_NAMES], missing_count=len(keys.missing_keys),
                   unexpected=sorted(keys.unexpected_keys)[:MAX_NAMES], unexpected_count=len(keys.unexpected_keys))
        step = "compare"
        diffs = [float((value.float() - dense(own[name]).detach().float().cpu()).abs().max())
                 for name, value in plain.state_dict().items()
                 if isinstance(own.get(name), torch.Tensor) and own[name].numel() and name not in keys.missing_keys]
    except Exception as exc:  # noqa: BLE001 - the step that failed is the finding
        out[f"{step}_error"] = _error(exc)
        return out
    out["compared"] = len(diffs)
    worst = max(diffs, key=lambda d: math.inf if math.isnan(d) else d, default=None)
    out["max_abs_diff"] = worst if worst is None or math.isfinite(worst) else str(worst)
    return out
