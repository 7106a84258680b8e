"""FP8 numerics of the FP8 Linear layers of a run (torchao `Float8Linear`, Transformer Engine `Linear`), sampled
inside it: per layer, every K-th forward call, the input and weight amax, the share of their non-zero values that a
tensorwise e4m3 cast flushes to zero (underflow) or clamps to the format's maximum (saturation), and the SQNR (dB)
of the layer's FP8 output against the high-precision `F.linear` of the same input and weight. Rows per sample are
capped, so the overhead is bounded. Hooks only read: the layer computes what it would without them.

Also the one gradient norm fp8doctor records (`grad_norm`: the matrix's runs and `watch --numerics/--baseline`)
and the one summary of a sample (`summary`: the layers below the SQNR threshold, for `watch` and `matrix`).
Imported inside child processes (`fp8doctor watch`'s observer): torch is imported lazily. The cast and the SQNR are
written here in plain torch, so a Transformer Engine environment without torchao is sampled the same way;
tests/test_inspect_numerics.py holds them equal to torchao's own `float8_utils.amax_to_scale`, `to_fp8_saturated`
and `compute_error`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

MAX_ROWS = 2048  # rows of the input (tokens) a sample looks at
EPS = 1e-12  # the amax floor of torchao's amax_to_scale
# What the sampler reads from a Transformer Engine `Linear` (the GEMM's weight is its `weight_names` parameters
# concatenated, dequantized when they are FP8; the GEMM adds the bias when `apply_bias`).
# tests/test_te_releases.py holds each to an assignment in `Linear.__init__` of every TE release the lab read.
TE_LINEAR_ATTRIBUTES = ("weight_names", "bias_names", "apply_bias")
# The first call of a layer that is sampled, per backend: TE's delayed scaling has no amax history on the first.
FIRST_SAMPLED_CALL = {"torchao": 0, "te": 1}


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


SAMPLED_CLASSES = "torchao Float8Linear and Transformer Engine Linear"


def summary(layers: dict[str, dict[str, Any]], every: Any, unsampled: Any = None) -> dict[str, Any]:
    """The sampled layers (NumericsSampler.to_dict(), non-finite floats as None) and those whose FP8 output falls
    below knowledge/numerics.py's SQNR threshold, named with the config that keeps them in bf16; `unsampled`: the
    FP8 layers the sampler cannot read ({name: class}, NumericsSampler.unsampled)."""
    from fp8doctor.knowledge.numerics import NOT_JUDGED_RECIPES, SQNR_MIN_DB, SQNR_SOURCE, keep_in_bf16_config

    low = [name for name, row in layers.items() if isinstance(row, dict)
           and isinstance(row.get("sqnr_db_min"), (int, float)) and row["sqnr_db_min"] < SQNR_MIN_DB
           and row.get("recipe") not in NOT_JUDGED_RECIPES]
    by_backend: dict[str, list[str]] = {}
    for name in low:
        by_backend.setdefault("te" if layers[name].get("backend") == "te" else "torchao", []).append(name)
    return {"every": every, "layers": layers, "threshold_db": SQNR_MIN_DB, "source": SQNR_SOURCE,
            "candidates": low, "config": keep_in_bf16_config(by_backend) if low else None,
            "unsampled": {str(k): str(v) for k, v in unsampled.items()} if isinstance(unsampled, dict) else {}}


def unsampled_words(unsampled: dict[str, str]) -> str:
    """'not sampled: 3 FP8 layers (2 LayerNormLinear, 1 LayerNormMLP, e.g. ...): ...'."""
    counts: dict[str, int] = {}
    for cls in unsampled.values():
        counts[cls] = counts.get(cls, 0) + 1
    kinds = ", ".join(f"{n} {cls}" for cls, n in sorted(counts.items()))
    plural = "s" if len(unsampled) != 1 else ""
    return (f"not sampled: {len(unsampled)} FP8 layer{plural} ({kinds}, e.g. {next(iter(unsampled))}): the sampler "
            f"reads {SAMPLED_CLASSES} layers only")


def finite_rows(layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """JSON-safe rows: a non-finite float (an SQNR of inf for an exact sample) becomes None."""
    return {name: {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
            for name, row in layers.items()}


def fp8_scale(amax: Any, dtype: Any) -> Any:
    """The tensorwise scale that maps amax to the format's largest value (torchao's amax_to_scale; TE's current
    scaling without power-of-2 rounding)."""
    import torch

    return (torch.finfo(dtype).max / torch.clamp(amax.to(torch.float64), min=EPS)).to(torch.float32)


def fp8_cast(scaled: Any, dtype: Any) -> Any:
    """The saturating cast of an already scaled tensor (torchao's to_fp8_saturated)."""
    import torch

    top = torch.finfo(dtype).max
    return scaled.clamp(min=-top, max=top).to(dtype)


def sqnr_db(ref: Any, out: Any) -> float:
    """Signal-to-quantization-noise ratio of `out` against `ref`, in dB (torchao's compute_error); inf when equal."""
    import torch

    return float(20 * torch.log10(torch.linalg.vector_norm(ref) / torch.linalg.vector_norm(ref - out)))


def _cast_stats(t: Any) -> dict[str, float]:
    import torch

    dtype = torch.float8_e4m3fn
    t = t.detach().float()
    amax = t.abs().max()
    scaled = t * fp8_scale(amax, dtype)
    cast = fp8_cast(scaled, dtype).float()
    nonzero = t != 0
    n = max(int(nonzero.sum()), 1)
    return {"amax": float(amax), "underflow": float(((cast == 0) & nonzero).sum()) / n,
            "saturated": float((scaled.abs() > torch.finfo(dtype).max).sum()) / n}


@functools.lru_cache(maxsize=1)
def _te_linear_modules() -> frozenset[str]:
    """Where TE's module `Linear` is defined, per the releases the static TE lab read (not `te.ops.Linear`)."""
    from fp8doctor.knowledge import te_releases

    return frozenset(r["modules"]["Linear"] for r in te_releases.data()["te_releases"].values())


def sampled_backend(module: Any) -> str | None:
    """"torchao" for a torchao Float8Linear, "te" for a Transformer Engine Linear (or a subclass of either, as
    FSDP2's `fully_shard` makes), else None: the layers whose forward is one FP8 GEMM of its input."""
    for cls in type(module).__mro__:
        if cls.__name__ == "Float8Linear" and cls.__module__.startswith("torchao"):
            return "torchao"
        if (cls.__name__ == "Linear" and cls.__module__.startswith("transformer_engine.")
                and cls.__module__ in _te_linear_modules()):  # the lab's JSON is read only when TE is in use
            return "te"
    return None


def dense(t: Any) -> Any:
    """A tensor as the high-precision values it holds: a TE FP8 tensor (QuantizedTensor) dequantized; a plain
    tensor's `dequantize()` is the tensor itself."""
    return t.dequantize() if hasattr(t, "dequantize") else t


def _gemm_operands(module: Any, backend: str, output: Any) -> tuple[Any, Any, Any]:
    """(weight, bias or None, output tensor) of the layer's GEMM, as the layer computed it."""
    import torch

    if backend == "torchao":
        return module.weight, module.bias, output
    weight = torch.cat([dense(getattr(module, n)).detach() for n in module.weight_names])
    bias = None
    if module.apply_bias:
        bias = torch.cat([dense(getattr(module, n)).detach() for n in module.bias_names])
    return weight, bias, output[0] if isinstance(output, tuple) else output


class NumericsSampler:
    """Forward hooks on every sampled FP8 layer (`sampled_backend`); `to_dict()` gives per layer the samples' worst
    values; `unsampled` names the other FP8 modules (TE's LayerNormLinear, LayerNormMLP, ...) with their class."""

    def __init__(self, every: int) -> None:
        self.every = max(1, every)
        self.layers: dict[str, dict[str, Any]] = {}
        self._calls: dict[str, int] = {}
        self._handles: list[Any] = []
        self._backends: dict[str, str] = {}
        self.unsampled: dict[str, str] = {}

    def attach(self, model: Any) -> NumericsSampler:
        from fp8doctor.observe import is_fp8_module

        for name, module in model.named_modules():
            backend = sampled_backend(module)
            if backend:
                self._calls[name] = 0
                self._backends[name] = backend
                self._handles.append(module.register_forward_hook(self._hook(name)))
            elif is_fp8_module(module):
                self.unsampled[name] = type(module).__name__
        return self

    def _hook(self, name: str) -> Any:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            calls = self._calls[name]
            self._calls[name] = calls + 1
            since = calls - FIRST_SAMPLED_CALL[self._backends[name]]
            if since < 0 or since % self.every:
                return
            try:
                self._sample(name, module, inputs[0], output)
            except Exception as exc:  # noqa: BLE001 - a sample that cannot be taken is recorded, never raised
                self.layers.setdefault(name, {})["error"] = f"{type(exc).__name__}: {exc}"

        return hook

    def _sample(self, name: str, module: Any, x: Any, output: Any) -> None:
        import torch

        from fp8doctor.observe import te_fp8_recipe

        recipe = te_fp8_recipe() if self._backends[name] == "te" else None
        with torch.no_grad():
            weight, bias, out = _gemm_operands(module, self._backends[name], output)
            x = x.detach().reshape(-1, x.shape[-1])[:MAX_ROWS].float()
            out = out.detach().reshape(-1, out.shape[-1])[:MAX_ROWS].float()
            weight = weight.detach().float()
            bias = None if bias is None else bias.detach().float()
            ref = torch.nn.functional.linear(x, weight, bias)
            sqnr = sqnr_db(ref, out)
            xs, ws = _cast_stats(x), _cast_stats(weight)
        row = self.layers.setdefault(name, {})  # may hold an earlier sample's error
        for key, start in (("backend", self._backends[name]), ("samples", 0), ("sqnr_db_min", float("inf")),
                           ("input_underflow_max", 0.0), ("input_saturated_max", 0.0),
                           ("weight_underflow_max", 0.0), ("weight_saturated_max", 0.0), ("input_amax_max", 0.0),
                           ("weight_amax_max", 0.0)):
            row.setdefault(key, start)
        if recipe:
            row["recipe"] = recipe
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
