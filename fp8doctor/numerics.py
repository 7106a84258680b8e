"""FP8 numerics of torchao Float8Linear layers, sampled inside a run: per layer, every K-th forward call, the input
and weight amax, the share of their non-zero values that the tensorwise e4m3 cast flushes to zero (underflow) or
clamps to the format's maximum (saturation), and the SQNR (dB) of the layer's FP8 output against the
high-precision `F.linear` of the same input and weight. Rows per sample are capped, so the overhead is bounded.

Also the one gradient norm fp8doctor records (`grad_norm`: the matrix's runs and `watch --numerics/--baseline`)
and the one summary of a sample (`summary`: the layers below the SQNR threshold, for `watch` and `matrix`).
Imported inside child processes (`fp8doctor watch`'s observer): torch and torchao are imported lazily. The casts
and the SQNR are torchao's own (`float8_utils.amax_to_scale`, `to_fp8_saturated`, `compute_error`).
"""

from __future__ import annotations

import math
from typing import Any

MAX_ROWS = 2048  # rows of the input (tokens) a sample looks at


def grad_norm(parameters: Any) -> float | str | None:
    """The L2 norm of the parameters' gradients in float32 (a sharded DTensor gradient counts its local shard:
    comparable with a run sharded the same way); None when no parameter has a gradient; "nan"/"inf" kept as
    strings, as losses are."""
    import torch

    squares = []
    for p in parameters:
        g = getattr(p, "grad", None)
        if g is None:
            continue
        g = g.to_local() if hasattr(g, "to_local") else g
        squares.append(torch.linalg.vector_norm(g.detach().float()).square())
    if not squares:
        return None
    value = float(torch.stack(squares).sum().sqrt())
    return value if math.isfinite(value) else str(value)


def summary(layers: dict[str, dict[str, Any]], every: Any) -> dict[str, Any]:
    """The sampled layers (NumericsSampler.to_dict(), non-finite floats as None) and those whose FP8 output falls
    below knowledge/numerics.py's SQNR threshold, named with the config that keeps them in bf16."""
    from fp8doctor.knowledge.numerics import SQNR_MIN_DB, SQNR_SOURCE, keep_in_bf16_config

    low = [name for name, row in layers.items()
           if isinstance(row.get("sqnr_db_min"), (int, float)) and row["sqnr_db_min"] < SQNR_MIN_DB]
    return {"every": every, "layers": layers, "threshold_db": SQNR_MIN_DB, "source": SQNR_SOURCE,
            "candidates": low, "config": keep_in_bf16_config(low) if low else None}


def finite_rows(layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """JSON-safe rows: a non-finite float (an SQNR of inf for an exact sample) becomes None."""
    return {name: {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
            for name, row in layers.items()}


def _cast_stats(t: Any) -> dict[str, float]:
    import torch
    from torchao.float8.float8_utils import amax_to_scale, to_fp8_saturated

    dtype = torch.float8_e4m3fn
    t = t.detach().float()
    amax = t.abs().max()
    scaled = t * amax_to_scale(amax, dtype)
    cast = to_fp8_saturated(scaled, dtype).float()
    nonzero = t != 0
    n = max(int(nonzero.sum()), 1)
    return {"amax": float(amax), "underflow": float(((cast == 0) & nonzero).sum()) / n,
            "saturated": float((scaled.abs() > torch.finfo(dtype).max).sum()) / n}


class NumericsSampler:
    """Forward hooks on every Float8Linear; `to_dict()` gives per layer the samples' worst values."""

    def __init__(self, every: int) -> None:
        self.every = max(1, every)
        self.layers: dict[str, dict[str, Any]] = {}
        self._calls: dict[str, int] = {}
        self._handles: list[Any] = []

    def attach(self, model: Any) -> NumericsSampler:
        for name, module in model.named_modules():
            if type(module).__name__ == "Float8Linear" and type(module).__module__.startswith("torchao"):
                self._calls[name] = 0
                self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str) -> Any:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            calls = self._calls[name]
            self._calls[name] = calls + 1
            if calls % self.every:
                return
            try:
                self._sample(name, module, inputs[0], output)
            except Exception as exc:  # noqa: BLE001 - a sample that cannot be taken is recorded, never raised
                self.layers.setdefault(name, {})["error"] = f"{type(exc).__name__}: {exc}"

        return hook

    def _sample(self, name: str, module: Any, x: Any, out: Any) -> None:
        import torch
        from torchao.float8.float8_utils import compute_error

        with torch.no_grad():
            x = x.detach().reshape(-1, x.shape[-1])[:MAX_ROWS].float()
            out = out.detach().reshape(-1, out.shape[-1])[:MAX_ROWS].float()
            weight = module.weight.detach().float()
            bias = None if module.bias is None else module.bias.detach().float()
            ref = torch.nn.functional.linear(x, weight, bias)
            sqnr = float(compute_error(ref, out))
            xs, ws = _cast_stats(x), _cast_stats(weight)
        row = self.layers.setdefault(name, {"samples": 0, "sqnr_db_min": float("inf"), "input_underflow_max": 0.0,
                                            "input_saturated_max": 0.0, "weight_underflow_max": 0.0,
                                            "weight_saturated_max": 0.0, "input_amax_max": 0.0,
                                            "weight_amax_max": 0.0})
        row["samples"] += 1
        row["sqnr_db_min"] = min(row["sqnr_db_min"], sqnr)
        for who, stats in (("input", xs), ("weight", ws)):
            row[f"{who}_underflow_max"] = max(row[f"{who}_underflow_max"], stats["underflow"])
            row[f"{who}_saturated_max"] = max(row[f"{who}_saturated_max"], stats["saturated"])
            row[f"{who}_amax_max"] = max(row[f"{who}_amax_max"], stats["amax"])

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: {**row, "calls": self._calls.get(name, 0)} for name, row in self.layers.items()}
