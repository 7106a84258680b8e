"""After training, the FP8 model's weights saved and loaded back as a user exports them for inference: the state
dict through `torch.save` and `torch.load` (torch's own default `weights_only`), loaded strictly into the same model
built without FP8. Records what failed (save, load, missing or unexpected keys) and the largest difference between
the loaded weights and the FP8 model's own high-precision values. The patient model is only read.

Not for the sharded entries: their state dict holds shards (DTensor) that a full save must gather first."""

from __future__ import annotations

import io
from typing import Any

from fp8doctor.runs.entries.common import Context, unwrap
from fp8doctor.runs.spec import SHARDED_ENTRIES

MAX_NAMES = 32


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:500]}"


def _dense(t: Any) -> Any:
    """A tensor as the high-precision values it holds (FP8 tensor subclasses dequantized)."""
    return t.dequantize() if hasattr(t, "dequantize") else t


def round_trip(ctx: Context, model: Any) -> None:
    """Fills ctx.result["checkpoint"] (see runs/spec.py)."""
    if ctx.spec.entry in SHARDED_ENTRIES:
        ctx.result["checkpoint"] = {"skipped": "sharded: a full state dict must gather the shards first"}
        return
    import torch

    from fp8doctor.runs.model import build_model

    inner = unwrap(getattr(model, "_orig_mod", model))  # torch.compile's wrapper keeps the model as _orig_mod
    out: dict[str, Any] = {}
    ctx.result["checkpoint"] = out
    buffer = io.BytesIO()
    try:
        torch.save(inner.state_dict(), buffer)
    except Exception as exc:  # noqa: BLE001 - a failed save is the finding
        out["save_error"] = _error(exc)
        return
    out["bytes"] = buffer.tell()
    buffer.seek(0)
    try:
        state = torch.load(buffer, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - e.g. weights_only refusing an FP8 tensor subclass
        out["load_error"] = _error(exc)
        return
    plain = build_model(ctx.spec.size, ctx.spec.seed)
    try:
        keys = plain.load_state_dict(state, strict=False)
    except Exception as exc:  # noqa: BLE001 - e.g. a shape or dtype the plain model cannot take
        out["load_error"] = _error(exc)
        return
    out["missing"] = sorted(keys.missing_keys)[:MAX_NAMES]
    out["missing_count"] = len(keys.missing_keys)
    out["unexpected"] = sorted(keys.unexpected_keys)[:MAX_NAMES]
    out["unexpected_count"] = len(keys.unexpected_keys)
    own = inner.state_dict()
    diffs = [float((value.float() - _dense(own[name]).detach().float().cpu()).abs().max())
             for name, value in plain.state_dict().items()
             if isinstance(own.get(name), torch.Tensor) and own[name].numel() and name not in keys.missing_keys]
    out["max_abs_diff"] = max(diffs) if diffs else None
