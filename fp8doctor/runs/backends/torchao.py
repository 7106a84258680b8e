"""torchao float8 training recipes, Accelerate's AO recipe handler, and the CPU emulation switch.

CPU emulation: torchao's `Float8LinearConfig(emulate=True)` keeps the real FP8 casts and scales but does the
matmul in high precision (`torch._scaled_mm` on CPU is ~1000x slower). Paths where the user never builds a
config (Trainer + env, `accelerate launch`, Accelerate's auto-created `AORecipeKwargs()`) get it through
`enable_cpu_emulation()`, which makes every `Float8LinearConfig` built afterwards in the process (and, through
the FP8DOCTOR_AO_EMULATE=1 variable, in processes it launches) emulated. Nothing else in the user's path changes:
the mixed-precision decision, the recipe handler and the layer filter are the libraries' own.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

EMULATE_ENV = "FP8DOCTOR_AO_EMULATE"
# RunSpec recipe name -> torchao Float8LinearRecipeName value.
RECIPE_NAMES = {"tensorwise": "tensorwise", "rowwise": "rowwise", "rowwise_with_gw_hp": "rowwise_with_gw_hp"}

_emulation_installed = False


def ao_config(recipe: str, emulate: bool) -> Any:
    from torchao.float8 import Float8LinearConfig

    config = Float8LinearConfig.from_recipe_name(RECIPE_NAMES[recipe])
    if emulate and not config.emulate:
        config = dataclasses.replace(config, emulate=True)
    return config


def sharded_config(recipe: str, emulate: bool) -> Any:
    """The recipe for a sharded (FSDP2) model: tensorwise all-gathers its weights in float8, as torchao's FSDP2
    recipe does (torchao supports the float8 all-gather for tensorwise scaling only)."""
    config = ao_config(recipe, emulate)
    if recipe == "tensorwise":
        config = dataclasses.replace(config, enable_fsdp_float8_all_gather=True)
    return config


def accelerate_filter(model: Any) -> Any:
    """Accelerate's own default module filter for the AO path (dims divisible by 16, first and last Linear
    skipped), so the native path converts exactly what `Accelerator.prepare` converts."""
    from functools import partial

    from accelerate.utils.ao import filter_linear_layers, find_first_last_linear_layers

    first, last = find_first_last_linear_layers(model)
    return partial(filter_linear_layers, layers_to_filter=[first, last])


def recipe_handler(recipe: str, emulate: bool) -> Any:
    from accelerate.utils import AORecipeKwargs

    return AORecipeKwargs(config=ao_config(recipe, emulate))


def enable_cpu_emulation() -> None:
    """Make every Float8LinearConfig created from now on use emulate=True (see the module docstring)."""
    global _emulation_installed
    os.environ[EMULATE_ENV] = "1"
    if _emulation_installed:
        return
    from torchao.float8 import Float8LinearConfig

    original = Float8LinearConfig.__post_init__

    def post_init(self: Any) -> None:
        original(self)
        object.__setattr__(self, "emulate", True)  # the dataclass is frozen

    Float8LinearConfig.__post_init__ = post_init  # type: ignore[method-assign]
    _emulation_installed = True


def emulation_requested() -> bool:
    return os.environ.get(EMULATE_ENV) == "1"


def model_emulated(model: Any) -> bool | None:
    """True/False from the converted layers' own config; None when no Float8Linear exists."""
    for _, mod in model.named_modules():
        cfg = getattr(mod, "config", None)
        if type(mod).__name__ == "Float8Linear" and cfg is not None:
            return bool(cfg.emulate)
    return None
