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
    """An FP8 module class or a subclass of one (FSDP2's `fully_shard` swaps a module's class for a generated
    `FSDP<Name>` subclass)."""
    return any(cls.__module__.startswith(pkg) and cls.__name__ == name
               for cls in type(module).__mro__ for pkg, name in _FP8_CLASSES)


# Classes whose instances are a sharded unit: FSDP2's FSDPModule, FSDP1's wrapper, DeepSpeed's engine.
_SHARD_CLASSES = {("torch.distributed", "FSDPModule"), ("torch.distributed", "FullyShardedDataParallel"),
                  ("deepspeed", "DeepSpeedEngine")}


def is_sharded_unit(module: Any) -> bool:
    return any(cls.__module__.startswith(pkg) and cls.__name__ == name
               for cls in type(module).__mro__ for pkg, name in _SHARD_CLASSES)


def _canonical(name: str) -> str:
    """The model's own module name: wrappers' prefixes (`module.`, FSDP1's `_fsdp_wrapped_module.`,
    torch.compile's `_orig_mod.`) removed."""
    parts = [p for p in name.split(".") if p not in ("module", "_fsdp_wrapped_module", "_orig_mod",
                                                      "_checkpoint_wrapped_module")]
    return ".".join(parts)


def sharding_plugin(acc: Any) -> str | None:
    """The sharding plugin the Accelerator's state uses: fsdp1, fsdp2, deepspeed-zeroN, or None."""
    state = getattr(acc, "state", None)
    kind = str(getattr(getattr(state, "distributed_type", None), "value", ""))
    if kind == "FSDP":
        return f"fsdp{getattr(getattr(state, 'fsdp_plugin', None), 'fsdp_version', 1)}"
    if kind == "DEEPSPEED":
        stage = getattr(getattr(state, "deepspeed_plugin", None), "zero_stage", None)
        return f"deepspeed-zero{stage}" if stage is not None else "deepspeed"
    return None


def sharding(model: Any) -> dict[str, Any]:
    """The sharded units of a prepared model and the FP8 layers inside one (the root counts: FSDP2's root unit
    holds what no inner unit took), with whether their weights are all-gathered in float8 (torchao's
    float8 weight wrapper as the local tensor of the sharded parameter)."""
    units = [name for name, mod in model.named_modules() if is_sharded_unit(mod)]
    inside: list[str] = []
    all_gather = []
    for name, mod in model.named_modules():
        if not is_fp8_module(mod):
            continue
        if any(u == "" or name == u or name.startswith(u + ".") for u in units):
            inside.append(_canonical(name))
        weight = getattr(mod, "weight", None)
        local = getattr(weight, "_local_tensor", weight)
        all_gather.append("Float8" in type(local).__name__)
    return {"wrapped_modules": [_canonical(u) or "<root>" for u in units], "fp8_layers_wrapped": inside,
            "float8_all_gather": bool(all_gather) and all(all_gather)}


DEEPSPEED_COPIES = "DeepSpeed steps flat copies of the parameters, not the model's own objects"
MAX_OUTSIDE_NAMES = 32  # names recorded of the parameters outside the optimizer (all are counted)


def params_outside_optimizer(model: Any, *optimizers: Any) -> list[str]:
    """The model's trainable parameters that no param group of the optimizers holds (compared by identity): they
    get gradients, but no optimizer ever changes them."""
    held = {id(p) for opt in optimizers for group in opt.param_groups for p in group["params"]}
    return [_canonical(n) for n, p in model.named_parameters() if p.requires_grad and id(p) not in held]


def fp8_weights_among(names: list[str], fp8_layers: list[str]) -> list[str]:
    """The names that are an FP8 layer's weight."""
    fp8 = set(fp8_layers)
    return [n for n in names if n.endswith(".weight") and n[: -len(".weight")] in fp8]


def optimizers_among(objects: tuple[Any, ...]) -> list[Any]:
    """The optimizers among prepare()'s outputs (Accelerate's wrapper is an Optimizer too)."""
    import torch

    return [o for o in objects if isinstance(o, torch.optim.Optimizer)]


def optimizer_membership(model: Any, optimizers: list[Any], plugin: str | None) -> dict[str, Any]:
    """How many trainable parameters none of the optimizers holds, how many of those are FP8 layers' weights, and
    the first names (FP8 weights first); `skipped` where the comparison means nothing (DeepSpeed)."""
    if plugin and plugin.startswith("deepspeed"):
        return {"skipped": DEEPSPEED_COPIES}
    outside = params_outside_optimizer(model, *optimizers)
    fp8 = fp8_weights_among(outside, [_canonical(n) for n in fp8_layer_names(model)])
    rest = [n for n in outside if n not in set(fp8)]
    return {"count": len(outside), "fp8_weights": len(fp8), "names": (fp8 + rest)[:MAX_OUTSIDE_NAMES]}


def ao_config_facts(handler: Any, user_config: bool) -> dict[str, Any] | None:
    """The float8 all-gather flag of the torchao config an Accelerator's AO recipe handler holds (None: no such
    handler; flag None: the handler holds no config, so torchao's default applies), and whether the user's own
    AORecipeKwargs(config=...) passed it."""
    if handler is None:
        return None
    config = getattr(handler, "config", None)
    flag = getattr(config, "enable_fsdp_float8_all_gather", None) if config is not None else None
    return {"all_gather": None if flag is None else bool(flag), "user_config": user_config}


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


def _te_state_manager() -> Any:
    """TE's FP8GlobalStateManager; it moved from pytorch.fp8 to pytorch.quantization in TE 2.9. None without TE."""
    for mod_name in ("transformer_engine.pytorch.quantization", "transformer_engine.pytorch.fp8"):
        try:
            return __import__(mod_name, fromlist=["FP8GlobalStateManager"]).FP8GlobalStateManager
        except (ImportError, AttributeError):
            continue
    return None


def te_fp8_enabled() -> bool:
    """TE's global FP8 state."""
    manager = _te_state_manager()
    return bool(manager is not None and manager.is_fp8_enabled())


def te_fp8_recipe() -> str | None:
    """The class name of the recipe TE's FP8 autocast runs now (None outside it, or without TE)."""
    manager = _te_state_manager()
    if manager is None or not manager.is_fp8_enabled():
        return None
    return type(manager.get_fp8_recipe()).__name__


def fp8_active(layer_count: int, counter: dict[str, int]) -> bool:
    """FP8 was really used: FP8 modules ran forward, and any TE module ran inside FP8 autocast."""
    if layer_count == 0 or counter.get("fp8_module_forwards", 0) == 0:
        return False
    te_total = counter.get("te_fp8_enabled_forwards", 0) + counter.get("te_fp8_disabled_forwards", 0)
    return te_total == 0 or counter.get("te_fp8_enabled_forwards", 0) > 0
