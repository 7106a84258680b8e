"""What the training frontends built on the HF Trainer do with precision, per release (lab cells in
lab/cells_frontends.yaml, probe lab/probes/trl_configs.py; held by tests/test_frontend_predictions.py).

TRL (observed 2026-12, CPU, torch 2.13.0): from 0.19 its SFTConfig, DPOConfig and GRPOConfig turn an unset `bf16`
into `not fp16` in `__post_init__` (1.x does it in trl/trainer/base_config.py), before TrainingArguments reads the
precision; 0.18 keeps TrainingArguments' default (False). So with TRL >= 0.19, unless the config says `bf16: false`,
the Trainer gives the Accelerator bf16 (transformers 5: the `mixed_precision` argument; 4.x: it rewrites
ACCELERATE_MIXED_PRECISION), and an exported ACCELERATE_MIXED_PRECISION=fp8 or an `accelerate launch` FP8 config
is overridden without a word. With `bf16: false`, the variable reaches the Accelerator and FP8 trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fp8doctor.knowledge.predict import MP_VAR, UNKNOWN, predict_trainer, transformers_passes
from fp8doctor.knowledge.versions import release

# `trl sft --mixed_precision fp8 --fp8_backend ao` (accelerate 1.15, TRL 1.16, watched 2026-12): launch accepts only
# lowercase backend names and exports them as they are, and Accelerator(...) then raises this (the variable, set to
# AO/TE in capitals, works).
LAUNCH_FP8_BACKEND_REFUSED = "'ao' is not a valid FP8BackendType"
TRL_BF16_DEFAULT_FROM = (0, 19)  # first TRL whose configs default bf16 to `not fp16` (cells trl0.18 / trl0.19)


@dataclass(frozen=True)
class Frontend:
    """A frontend that builds TrainingArguments for the user: its distribution, its console entry point, the
    argument classes it defines (by module prefix), and the field in its own config that decides the precision."""

    name: str
    package: str
    entry_point: str
    module_prefix: str
    field: str
    how: str


TRL = Frontend("TRL", "trl", "trl", "trl.", "bf16",
               "bf16=False in your SFTConfig/DPOConfig/GRPOConfig (`bf16: false` in a `trl ... --config` YAML, "
               "`--bf16 false` on its command line)")
FRONTENDS = (TRL,)


def frontend_of_module(module: str | None) -> Frontend | None:
    """The frontend whose argument class lives in this module (e.g. trl.trainer.sft_config), if any."""
    return next((f for f in FRONTENDS if module and module.startswith(f.module_prefix)), None)


def by_name(name: str | None) -> Frontend | None:
    return next((f for f in FRONTENDS if name in (f.name, f.package, f.entry_point)), None)


def trl_bf16(trl: str | None, bf16: bool | None, fp16: bool = False) -> bool | None:
    """The config's bf16 after its `__post_init__` (None: unknown release)."""
    if bf16 is not None:
        return bf16
    r = release(trl)
    if r is None:
        return None
    return (not fp16) if r >= TRL_BF16_DEFAULT_FROM else False


def overrides_fp8(frontend: Frontend, version: str | None) -> bool | None:
    """Whether this release, left at its defaults, replaces an FP8 precision set outside it (None: unknown)."""
    if frontend is TRL:
        return trl_bf16(version, None)
    return None


def predict_trl(versions: Mapping[str, str | None], *, bf16: bool | None, env: Mapping[str, str],
                trainer: bool) -> dict[str, Any]:
    """A TRL config built with bf16 (None: unset) under env: the config's bf16 and mixed_precision, the variable
    after it, and with `trainer`, what the Trainer passed to the Accelerator and what trained."""
    eff = trl_bf16(versions.get("trl"), bf16)
    passes = None if eff is None else transformers_passes(versions.get("transformers"), eff, env)
    if passes is None or eff is None:
        return dict(UNKNOWN)
    config = {"bf16": str(eff), "fp16": "False",
              "mixed_precision": "<absent>" if passes["writes_env"] else passes["mixed_precision"]}
    out: dict[str, Any] = {"outcome": "ok", "config": config,
                           "env_after_config": {**env, MP_VAR: passes["env_after"]} if passes["writes_env"]
                           else dict(env)}
    if trainer:
        got = predict_trainer(versions.get("accelerate"), versions.get("transformers"),
                              torchao=bool(versions.get("torchao")), bf16=eff, env=env)
        out.update({k: v for k, v in got.items() if k not in ("config",)})
    return out
