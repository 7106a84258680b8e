"""What the training frontends built on the HF Trainer do with precision, per release (lab cells in
lab/cells_frontends.yaml, probe lab/probes/trl_configs.py; held by tests/test_frontend_predictions.py).

TRL (observed 2026-12, CPU, torch 2.13.0): from 0.19 its SFTConfig, DPOConfig and GRPOConfig turn an unset `bf16`
into `not fp16` in `__post_init__` (1.x does it in trl/trainer/base_config.py), before TrainingArguments reads the
precision; 0.18 keeps TrainingArguments' default (False). So with TRL >= 0.19, unless the config says `bf16: false`,
the Trainer gives the Accelerator bf16 (transformers 5: the `mixed_precision` argument; 4.x: it rewrites
ACCELERATE_MIXED_PRECISION), and an exported ACCELERATE_MIXED_PRECISION=fp8 or an `accelerate launch` FP8 config
is overridden without a word. With `bf16: false`, the variable reaches the Accelerator and FP8 trains.

axolotl (0.19.0, its own cell): ACCELERATE_MIXED_PRECISION comes from its config's `fp8` key, never from outside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fp8doctor.knowledge.command_forms import CommandForm
from fp8doctor.knowledge.engine import Setup, Stack, predict
from fp8doctor.knowledge.optimizer_params import ALL_GATHER, all_gather, observed
from fp8doctor.knowledge.predict import MP_VAR, UNKNOWN, transformers_passes
from fp8doctor.knowledge.releases import coverage
from fp8doctor.knowledge.values import given, truthy
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
    overrides: str  # what the release does with a precision set outside it
    sets_precision_env: bool = False  # replaces ACCELERATE_MIXED_PRECISION in its training process (observed)


TRL = Frontend("TRL", "trl", "trl", "trl.", "bf16",
               "bf16=False in your SFTConfig/DPOConfig/GRPOConfig (`bf16: false` in a `trl ... --config` YAML, "
               "`--bf16 false` on its command line)", "defaults bf16 to True when it is not set")
AXOLOTL = Frontend("axolotl", "axolotl", "axolotl", "axolotl.", "fp8", "`fp8: true` in your axolotl config YAML",
                   "sets ACCELERATE_MIXED_PRECISION from its config's own `fp8` key (bf16, fp16 or no without it)",
                   sets_precision_env=True)
FRONTENDS = (TRL, AXOLOTL)


def frontend_of_module(module: str | None) -> Frontend | None:
    """The frontend whose argument class lives in this module (e.g. trl.trainer.sft_config), if any."""
    return next((f for f in FRONTENDS if module and module.startswith(f.module_prefix)), None)


def frontend_of_command(form: CommandForm) -> Frontend | None:
    """The frontend a command starts: its console entry point (`axolotl train cfg.yaml`), or one of its modules run
    by an interpreter or a launcher (`python -m axolotl.cli.train`, `accelerate launch -m axolotl.cli.train`)."""
    if form.frontend:
        return by_name(form.frontend)
    return frontend_of_module(f"{form.target[1]}.") if form.target[:1] == ("-m",) else None


def by_name(name: str | None) -> Frontend | None:
    return next((f for f in FRONTENDS if name in (f.name, f.package, f.entry_point)), None)


def trl_bf16(trl: str | None, bf16: bool | None, fp16: bool = False) -> bool | None:
    """The config's bf16 after its `__post_init__` (None: unknown release)."""
    if bf16 is not None:
        return bf16
    r = release(trl)
    if r is None or coverage("trl", trl).status == "older":
        return None
    return (not fp16) if r >= TRL_BF16_DEFAULT_FROM else False


def overrides_fp8(frontend: Frontend, version: str | None) -> bool | None:
    """Whether this release, left at its defaults, replaces an FP8 precision set outside it (None: unknown)."""
    if frontend is TRL:
        return trl_bf16(version, None)
    if frontend is AXOLOTL:
        r = release(version)
        return None if r is None or r < AXOLOTL_OBSERVED else True
    return None


def predict_trl(versions: Mapping[str, str | None], *, bf16: bool | None, env: Mapping[str, str],
                trainer: bool) -> dict[str, Any]:
    """A TRL config built with bf16 (None: unset) under env: the config's bf16 and mixed_precision, the variable
    after it, and with `trainer`, what the Trainer passed to the Accelerator and what trained."""
    eff = trl_bf16(versions.get("trl"), bf16)
    passes = None if eff is None else transformers_passes(versions.get("transformers"), "bf16" if eff else None, env)
    if passes is None or eff is None:
        return dict(UNKNOWN)
    config = {"bf16": str(eff), "fp16": "False",
              "mixed_precision": "<absent>" if passes["writes_env"] else passes["mixed_precision"]}
    out: dict[str, Any] = {"outcome": "ok", "config": config,
                           "env_after_config": {**env, MP_VAR: passes["env_after"]} if passes["writes_env"]
                           else dict(env)}
    if trainer:
        got = predict(Stack.of(versions), Setup(frontend="trainer", precision="bf16" if eff else None, env=env))
        out.update({k: v for k, v in got.items() if k not in ("config",)})
    return out


# PEFT LoRA over torchao FP8 (cells peft0.18-peft0.21 on accelerate 1.15, peft0.21 on 1.12, probe
# lab/probes/peft_fp8.py, torchao 0.18). PEFT 0.18 cannot build a LoRA model at all while torchao 0.18 is installed;
# 0.19 and later can.
PEFT_TORCHAO_IMPORT_ERROR = ("cannot import name 'LinearActivationQuantizedTensor' from 'torchao.quantization' "
                             "(<site-packages>/torchao/quantization/__init__.py)")
PEFT_LAST_BROKEN = (0, 18)  # the one PEFT minor observed raising it
PEFT_FIRST_WORKING = (0, 19)  # the oldest PEFT observed working
FP8_DIM_MULTIPLE = 16  # Accelerate's torchao filter converts a Linear only when both dims are multiples of 16


def predict_peft(versions: Mapping[str, str | None], *, order: str, r: int,
                 env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """LoRA (rank r) and torchao FP8: `peft_then_prepare` (get_peft_model, then Accelerator(mixed_precision='fp8')
    prepare, as a Trainer does; `env` the ACCELERATE_* variables it sees) or `fp8_then_peft`
    (convert_to_float8_training first, no FP8 in the Accelerator). Returns the outcome, the class of a LoRA target's
    base layer (`base_fp8`: Float8Linear, except the model's first Linear, which Accelerate's filter skips) and
    adapters (`adapters_fp8`), and whether one optimizer step trained the adapters: adapters Accelerate converts
    get new Parameters outside the optimizer where its own torchao config has float8 all-gather on
    (knowledge/optimizer_params)."""
    peft, torchao = release(versions.get("peft")), release(versions.get("torchao"))
    if peft is None or torchao is None:
        return dict(UNKNOWN)
    if peft < PEFT_FIRST_WORKING:
        if peft[:2] != PEFT_LAST_BROKEN or torchao < (0, 18):
            return dict(UNKNOWN)  # older PEFT, or 0.18 with an older torchao: not observed
        return {"outcome": "raised", "type": "ImportError", "message": PEFT_TORCHAO_IMPORT_ERROR,
                "stage": "get_peft_model"}
    adapters_fp8 = order == "peft_then_prepare" and r % FP8_DIM_MULTIPLE == 0
    if adapters_fp8 and not observed(Stack.of(versions)):
        return dict(UNKNOWN)
    outside = all_gather(versions.get("accelerate"), env or {}, None) if adapters_fp8 else False
    return {"outcome": "ok", "base_fp8": True, "first_linear_fp8": order == "fp8_then_peft",
            "adapters_fp8": adapters_fp8, "adapters_train": not outside}


# axolotl 0.19.0 (cell axolotl0.19-ao, probe lab/probes/axolotl_config.py; config stage only, no training). Its
# prepare_optim_env, run by `axolotl train` in the training process, sets ACCELERATE_MIXED_PRECISION from the config
# alone: an exported fp8 is replaced by bf16 when the config has bf16 and no fp8 (observed, validate_config and
# load_cfg paths). `no` when neither fp8, bf16 nor fp16 is set is read from its source, not observed.
AXOLOTL_OBSERVED = (0, 19)
AXOLOTL_COMPILE_WARNING = ("torch_compile is strongly recommended for FP8 training in order to see speed "
                           "improvements. Please consider setting `torch_compile: true` in your config.")
AXOLOTL_FSDP_AC_WARNING = ("FP8 + FSDP2 + activation checkpointing may be slower than BF16 training. Please "
                           "considering setting `activation_checkpointing: false` in your FSDP config.")
# The CLI's load_cfg validates against the GPU it sees (compute capability >= 9.0 in axolotl.cli.config's
# compute_supports_fp8): with fp8 and no such GPU it raises this (a pydantic ValidationError; observed on CPU).
AXOLOTL_NO_FP8_GPU = "fp8 requested, but fp8 is not supported on this GPU"
AXOLOTL_FP8_MIN_CC = (9, 0)


def axolotl_mixed_precision(config: Mapping[str, Any]) -> str:
    """The ACCELERATE_MIXED_PRECISION axolotl's prepare_optim_env leaves, whatever was exported before it."""
    if config.get("fp8"):
        return "fp8"
    if config.get("bf16") is True:
        return "bf16"
    return "fp16" if config.get("fp16") else "no"


# axolotl's trainer passes the Accelerator mixed_precision='fp8' and AORecipeKwargs(config=build_fp8_linear_config(
# recipe, enable_fsdp_float8_all_gather=<this key>)): its own torchao config, so the key decides whether the FP8
# weights leave the optimizer (probe lab/probes/axolotl_optimizer.py, axolotl 0.19.0 with accelerate 1.13 and
# torchao 0.17, no FSDP: unset or false 0 of 4 outside, true 4 of 4, none of them trained).
AXOLOTL_ALL_GATHER_KEY = "fp8_enable_fsdp_float8_all_gather"
AXOLOTL_SHARDING_KEYS = ("fsdp", "fsdp_config", "fsdp_version", "deepspeed")  # not observed with axolotl


def axolotl_fp8_weights_outside(versions: Mapping[str, str | None], config: Mapping[str, Any]) -> bool | None:
    """Whether axolotl's own FP8 path leaves the FP8 layers' weights outside the optimizer (None: not observed:
    another axolotl minor, or FSDP / DeepSpeed, whose prepare re-creates or copies parameters itself)."""
    r = release(versions.get("axolotl"))
    if r is None or r[:2] != AXOLOTL_OBSERVED or any(given(config.get(k)) for k in AXOLOTL_SHARDING_KEYS):
        return None
    if not truthy(config.get("fp8")):
        return False
    return all_gather(versions.get("accelerate"), {}, {ALL_GATHER: truthy(config.get(AXOLOTL_ALL_GATHER_KEY))})


def predict_axolotl(versions: Mapping[str, str | None], config: Mapping[str, Any],
                    gpu_fp8: bool | None = None) -> dict[str, Any]:
    """axolotl's validate_config + prepare_optim_env on a config: fp8 stays as given whatever bf16 says (#3323's
    'fp8 false when bf16 is on' is not what 0.19 validation does), ACCELERATE_MIXED_PRECISION comes from the config
    (`axolotl_mixed_precision`), and the warnings it logs. `gpu_fp8`: the CLI's capability check ran and found an
    FP8 GPU (True) or none (False: fp8 is refused); None: validated without capabilities."""
    r = release(versions.get("axolotl"))
    if r is None or r < AXOLOTL_OBSERVED:
        return dict(UNKNOWN)
    fp8 = bool(config.get("fp8"))
    if fp8 and gpu_fp8 is False:
        return {"outcome": "raised", "type": "ValidationError", "message": f"Value error, {AXOLOTL_NO_FP8_GPU}",
                "stage": "load_cfg"}
    fsdp = config.get("fsdp_config") or {}
    warnings = []
    if fp8 and not config.get("torch_compile"):
        warnings.append(AXOLOTL_COMPILE_WARNING)
    if fp8 and (fsdp.get("activation_checkpointing") is True or fsdp.get("fsdp_activation_checkpointing") is True):
        warnings.append(AXOLOTL_FSDP_AC_WARNING)
    return {"outcome": "ok", "fp8": config.get("fp8"), "mixed_precision_env": axolotl_mixed_precision(config),
            "warnings": warnings}
