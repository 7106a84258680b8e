"""Whether the FP8 layers' weights stay the parameters the optimizer holds (pure, on version strings).

torchao gives each weight it converts a new Parameter when its Float8LinearConfig has
`enable_fsdp_float8_all_gather=True` (the weight is wrapped for FSDP2's float8 all-gather, with or without FSDP).
An optimizer built before `prepare(model, optimizer)` (every script, the Trainer) keeps the old objects: those
weights get gradients, are never stepped, and never train. Observed by the lab's `optimizer_params` probe
(accelerate 1.4-1.16 with torchao 0.18, tests/test_optimizer_params.py): Accelerate builds that flag True in the
config it makes itself (no recipe handler, or AORecipeKwargs() without a config) from 1.13, reading
ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER (which `accelerate launch` exports from the config file's
`fp8_config: {enable_fsdp_float8_all_gather: false}`); before 1.13 it passes no config and torchao's default
(False) applies. A Float8LinearConfig the user passes decides by its own flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fp8doctor.knowledge.engine import Setup, Stack, launch_env, predict
from fp8doctor.knowledge.predict import ALL_GATHER_VAR, AO_ENV_FIELDS, AO_READS_ENV_FROM, flag_true
from fp8doctor.knowledge.versions import release

ALL_GATHER = AO_ENV_FIELDS[ALL_GATHER_VAR]
OBSERVED_ACCELERATE = tuple((1, minor) for minor in range(4, 17))  # the lab cells that ran the probe
OBSERVED_TORCHAO = ((0, 18),)
DEFAULT_ON_FROM = AO_READS_ENV_FROM  # Accelerate's own config sets the flag True from this release
SENTENCE = "FP8 layers' weights are not held by the optimizer and never train"


def observed(stack: Stack) -> bool:
    """Whether the lab ran the probe with these accelerate and torchao releases."""
    acc, ao = release(stack.accelerate), release(stack.torchao)
    return acc is not None and acc[:2] in OBSERVED_ACCELERATE and ao is not None and ao[:2] in OBSERVED_TORCHAO


def all_gather(accelerate: str | None, env: Mapping[str, str], ao_config: Mapping[str, Any] | None) -> bool | None:
    """`enable_fsdp_float8_all_gather` of the config the conversion gets (None: not a version)."""
    if ao_config is not None:
        return bool(ao_config.get(ALL_GATHER, False))  # torchao's own default
    r = release(accelerate)
    if r is None:
        return None
    if r < DEFAULT_ON_FROM:
        return False
    value = env.get(ALL_GATHER_VAR)
    return True if value is None else flag_true(value)


def start_env(stack: Stack, setup: Setup) -> dict[str, str]:
    """The ACCELERATE_* variables the training process sees: the shell's, then what `accelerate launch` exports."""
    return {**setup.env, **launch_env(setup.launch_yaml or {}, stack.accelerate)}


def predict_optimizer(stack: Stack, setup: Setup) -> dict[str, Any]:
    """The engine's outcome of this start, and for one that trains in FP8 `weights_outside_optimizer`: whether the
    FP8 layers' weights leave the optimizer (with `all_gather`, the flag that decides). `unobserved` where the lab
    never ran these releases."""
    if not observed(stack):
        return {"outcome": "unobserved", "accelerate": stack.accelerate, "torchao": stack.torchao}
    got = predict(stack, setup)
    if got["outcome"] != "ok" or not got.get("fp8"):
        return {**got, "weights_outside_optimizer": False if got["outcome"] == "ok" else None}
    config = setup.ao_config if setup.handler == "AORecipeKwargs" else None
    flag = all_gather(stack.accelerate, start_env(stack, setup), config)
    return {**got, "all_gather": flag, "weights_outside_optimizer": flag}
