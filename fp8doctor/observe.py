"""What FP8 really did inside a model: FP8 layers against eligible Linear layers, FP8 forwards seen.

Imported inside child processes (the run worker and `fp8doctor watch`'s observer), so torch is imported
lazily and nothing here changes what the model computes: hooks only count.
"""

from __future__ import annotations

from typing import Any

# Module classes that do FP8 GEMMs, by (defining package prefix, class name).
_FP8_CLASSES = {
    ("torchao.float8", "Float8Linear"),
    ("transformer_engine.pytorch", "Linear"),
    ("transformer_engine.pytorch", "LayerNormLinear"),
    ("transformer_engine.pytorch", "LayerNormMLP"),
    ("transformer_engine.pytorch", "GroupedLinear"),
}


def is_fp8_module(module: Any) -> bool:
    cls = type(module)
    return any(cls.__module__.startswith(pkg) and cls.__name__ == name for pkg, name in _FP8_CLASSES)


def fp8_layer_names(model: Any) -> list[str]:
    return [name for name, mod in model.named_modules() if is_fp8_module(mod)]


def linear_layer_names(model: Any) -> list[str]:
    """Every nn.Linear (torchao's Float8Linear is a subclass) plus every TE linear module."""
    import torch

    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) or is_fp8_module(m)]


# observe's rule names -> the paths of fp8doctor.knowledge.shapes, which owns the rules.
RULE_TARGET = {"accelerate-ao": "accelerate-ao", "accelerate-te": "accelerate-te", "all-div16": "torchao"}


def eligible_linear_names(model: Any, rule: str) -> list[str]:
    """Names of the Linear layers a backend's conversion would turn into FP8, computed on the unconverted model.

    rule:
      "accelerate-ao": Accelerate's torchao path - dims divisible by 16, first and last Linear skipped.
      "accelerate-te": Accelerate's TE conversion - every Linear with dims divisible by 16, but a parent stops
                       converting its remaining children at the first Linear that is not divisible.
      "all-div16":     every Linear whose dims are divisible by 16.
    """
    import torch

    from fp8doctor.knowledge.shapes import FP8, Layer, classify

    if rule not in RULE_TARGET:
        raise ValueError(f"unknown eligibility rule {rule!r}")
    layers = [Layer(n, m.in_features, m.out_features) for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear)]
    return [layer.name for layer, (status, _) in zip(layers, classify(layers, RULE_TARGET[rule]), strict=True)
            if status == FP8]


class FP8ForwardCounter:
    """Counts forward calls of FP8 modules and, for TE, whether FP8 autocast was on during them."""

    def __init__(self) -> None:
        self.fp8_module_forwards = 0
        self.te_fp8_enabled_forwards = 0
        self.te_fp8_disabled_forwards = 0
        self._handles: list[Any] = []

    def attach(self, model: Any) -> FP8ForwardCounter:
        for _, mod in model.named_modules():
            if is_fp8_module(mod):
                self._handles.append(mod.register_forward_pre_hook(self._pre_hook))
        return self

    def _pre_hook(self, module: Any, _inputs: Any) -> None:
        self.fp8_module_forwards += 1
        if type(module).__module__.startswith("transformer_engine"):
            if te_fp8_enabled():
                self.te_fp8_enabled_forwards += 1
            else:
                self.te_fp8_disabled_forwards += 1

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def to_dict(self) -> dict[str, int]:
        return {
            "fp8_module_forwards": self.fp8_module_forwards,
            "te_fp8_enabled_forwards": self.te_fp8_enabled_forwards,
            "te_fp8_disabled_forwards": self.te_fp8_disabled_forwards,
        }


def te_fp8_enabled() -> bool:
    """TE's global FP8 state; the manager moved from pytorch.fp8 to pytorch.quantization in TE 2.9."""
    for mod_name in ("transformer_engine.pytorch.quantization", "transformer_engine.pytorch.fp8"):
        try:
            mod = __import__(mod_name, fromlist=["FP8GlobalStateManager"])
            return bool(mod.FP8GlobalStateManager.is_fp8_enabled())
        except (ImportError, AttributeError):
            continue
    return False


def fp8_active(layer_count: int, counter: dict[str, int]) -> bool:
    """FP8 was really used: FP8 modules ran forward, and any TE module ran inside FP8 autocast."""
    if layer_count == 0 or counter.get("fp8_module_forwards", 0) == 0:
        return False
    te_total = counter.get("te_fp8_enabled_forwards", 0) + counter.get("te_fp8_disabled_forwards", 0)
    return te_total == 0 or counter.get("te_fp8_enabled_forwards", 0) > 0
