"""Which Linear layers each FP8 path takes, by shape and position, and why not the others (pure, on plain data).

The rules, and where each was seen:
- Accelerate's torchao path (`AORecipeKwargs` without a `module_filter_func`): keeps the first and the last
  `nn.Linear` of the model (in `named_modules()` order) in high precision and any Linear whose in or out features
  are not divisible by 16. Observed by the lab: 6 Linear in, 4 FP8 out on accelerate 1.7, 1.9, 1.11, 1.12, 1.15
  (`accelerator` probe); layer by layer with shapes not divisible by 16 (`ao_filter` probe). 1.4, 1.5, 1.8 do not
  reach the filter (`predict.predict_accelerator` says what they raise instead).
- torchao itself (`convert_to_float8_training`; its `_auto_filter_for_recipe` states the rule): both dims
  divisible by 16 (`torch._scaled_mm`); no first/last rule.
- Accelerate's TE conversion (`accelerate.utils.transformer_engine.convert_model`, the same in every release the
  static lab read): a Linear whose weight dims are not both divisible by 16 is left as it is and the walk *returns*,
  so the later children of the same parent (and everything below them) stay unconverted too.
- TE MXFP8 (`MXFP8BlockScaling`): a block is 32 values, so dims must be divisible by 32; Accelerate only checks 16,
  so a layer divisible by 16 but not 32 is converted and fails in TE at its first FP8 forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fp8doctor.knowledge.predict import predict_accelerator

FP8 = "fp8"  # converted and runs in FP8
KEPT = "kept"  # left in high precision by the path's own filter
FAILS = "fails"  # converted, but the library raises on this shape at run time

AO_DIVISOR = 16
TE_DIVISOR = 16
MXFP8_BLOCK = 32
AO_FIRST_LAST_OBSERVED = ("1.6", "1.7", "1.9", "1.10", "1.11", "1.12", "1.13", "1.14", "1.15", "1.16")

TARGETS: dict[str, dict[str, str]] = {
    "accelerate-ao": {"label": "Accelerate + torchao", "family": "per-tensor",
                      "how": "Accelerator(mixed_precision='fp8', kwargs_handlers=[AORecipeKwargs()])"},
    "torchao": {"label": "torchao", "family": "per-tensor",
                "how": "torchao.float8.convert_to_float8_training(model)"},
    "accelerate-te": {"label": "Accelerate + TE", "family": "per-tensor",
                      "how": "Accelerator(mixed_precision='fp8', kwargs_handlers=[TERecipeKwargs()])"},
    "te-mxfp8": {"label": "Accelerate + TE MXFP8", "family": "mxfp8",
                 "how": "TERecipeKwargs(use_mxfp8_block_scaling=True) (accelerate >= 1.11)"},
}


@dataclass(frozen=True)
class Layer:
    """One nn.Linear as the model holds it: full name, features, and its parent's name ('' for the root)."""

    name: str
    in_features: int
    out_features: int

    @property
    def parent(self) -> str:
        return self.name.rpartition(".")[0]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "in_features": self.in_features, "out_features": self.out_features}


def _not_divisible(layer: Layer, by: int) -> str | None:
    bad = [f"{what} {n}" for what, n in (("in_features", layer.in_features), ("out_features", layer.out_features))
           if n % by]
    return " and ".join(bad) + f" not divisible by {by}" if bad else None


def ao_path_blocked(accelerate: str | None) -> str | None:
    """Why this Accelerate release's torchao path converts nothing (it raises before or in the filter), or None."""
    outcome = predict_accelerator(accelerate, torchao=True, mp_arg="fp8", env={}, handler="AORecipeKwargs",
                                  cuda_build=True)
    if outcome["outcome"] == "raised":
        return f"accelerate {accelerate} raises {outcome['type']} at {outcome['stage']}: {outcome['message']}"
    if outcome["outcome"] == "absent":
        return f"accelerate {accelerate} has no AORecipeKwargs (added in 1.4)"
    return None


def _accelerate_ao(layers: list[Layer]) -> list[tuple[str, str]]:
    edge = {layers[0].name: "first", layers[-1].name: "last"} if layers else {}
    out = []
    for layer in layers:
        if layer.name in edge:
            out.append((KEPT, f"the {edge[layer.name]} Linear: Accelerate's torchao filter keeps the first and last "
                              "Linear in high precision"))
        elif reason := _not_divisible(layer, AO_DIVISOR):
            out.append((KEPT, f"{reason}: Accelerate's torchao filter skips it"))
        else:
            out.append((FP8, ""))
    return out


def _torchao(layers: list[Layer]) -> list[tuple[str, str]]:
    return [(KEPT, f"{reason}: torch._scaled_mm needs multiples of 16 and torchao's own filters skip it")
            if reason else (FP8, "")
            for reason in (_not_divisible(layer, AO_DIVISOR) for layer in layers)]


def _accelerate_te(layers: list[Layer], block: int | None) -> list[tuple[str, str]]:
    stopped: list[tuple[str, str]] = []  # (parent, the Linear at which Accelerate's walk of that parent returned)
    out = []
    for layer in layers:
        # `layers` is in named_modules() (pre-)order, so a layer under a stopped parent comes after its stop.
        stop = next((who for parent, who in stopped if not parent or layer.name.startswith(parent + ".")), None)
        if stop is not None:
            out.append((KEPT, f"after {stop} under the same parent: Accelerate's TE conversion stops at the first "
                              "Linear not divisible by 16"))
        elif reason := _not_divisible(layer, TE_DIVISOR):
            stopped.append((layer.parent, layer.name))
            out.append((KEPT, f"{reason}: Accelerate's TE conversion leaves it and skips the rest of its parent"))
        elif block and (reason := _not_divisible(layer, block)):
            out.append((FAILS, f"{reason}: converted, but MXFP8 scales blocks of {block} values and TE raises at "
                               "the first FP8 forward"))
        else:
            out.append((FP8, ""))
    return out


def classify(layers: list[Layer], target: str, accelerate: str | None = None) -> list[tuple[str, str]]:
    """(status, reason) per layer, in order, for one target of TARGETS."""
    if target == "accelerate-ao":
        blocked = ao_path_blocked(accelerate) if accelerate else None
        return [(FAILS, blocked)] * len(layers) if blocked else _accelerate_ao(layers)
    if target == "torchao":
        return _torchao(layers)
    if target == "accelerate-te":
        return _accelerate_te(layers, None)
    if target == "te-mxfp8":
        return _accelerate_te(layers, MXFP8_BLOCK)
    raise ValueError(f"unknown target {target!r}")
