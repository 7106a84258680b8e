"""Frontends that set the precision on the user's behalf (TRL): warn when one is installed and FP8 is asked, and
lint its configs against what the lab observed (fp8doctor.knowledge.frontends)."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.frontends import FP8_DIM_MULTIPLE, FRONTENDS, TRL, overrides_fp8, predict_peft, trl_bf16
from fp8doctor.rules.common import NO_INTENT, configs_of, intent, intent_text, pkg
from fp8doctor.rules.precision import fix_text


def check_frontend_overrides(facts: dict[str, Any]) -> list[Finding]:
    """A frontend installed whose configs, left at their defaults, replace FP8 with bf16."""
    out = []
    signs = intent(facts)
    for front in FRONTENDS:
        version = pkg(facts, front.package)
        if not version:
            continue
        fid = f"frontend.{front.package}"
        if not signs:
            out.append(Finding(fid, Level.SKIP, f"{front.name} {version} installed (FP8 not intended)", NO_INTENT))
            continue
        if not overrides_fp8(front, version):
            out.append(Finding(fid, Level.OK, f"{front.name} {version} keeps TrainingArguments' bf16 default "
                               "(False)", f"{intent_text(signs)}."))
            continue
        if front is TRL and configs_of(facts, "trl"):
            continue  # check_trl_config judges the config the user named
        out.append(Finding(
            fid, Level.WARN,
            f"{front.name} {version} is installed and FP8 is asked: its configs set bf16=True unless told otherwise",
            f"{intent_text(signs)}.\n{front.name} {version}'s SFTConfig, DPOConfig and GRPOConfig turn an unset "
            f"bf16 into True in __post_init__ (observed from TRL 0.19; 0.18 keeps False), and the Trainer then gives "
            f"the Accelerator bf16 over ACCELERATE_MIXED_PRECISION=fp8 or an `accelerate launch` FP8 config, "
            f"without a word. Set {front.how}.", fix_text({**facts, "frontend": front.name})))
    return out


def _flag(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def check_trl_config(facts: dict[str, Any]) -> list[Finding]:
    """A TRL config (`trl sft|dpo|grpo --config FILE`): the bf16 its config class will hold, against FP8 intent."""
    out = []
    signs = intent(facts)
    version = pkg(facts, "trl")
    for cfg in configs_of(facts, "trl"):
        given = _flag(cfg["data"].get("bf16"))
        held = trl_bf16(version, given) if version else (True if given is None else given)
        said = "bf16 unset" if given is None else f"bf16: {str(given).lower()}"
        release = f"TRL {version}" if version else "TRL (not installed here; 0.19 and later)"
        if not signs:
            out.append(Finding("lint.trl-bf16", Level.SKIP, f"{cfg['path']}: TRL config, FP8 not intended",
                               NO_INTENT))
        elif held:
            out.append(Finding(
                "lint.trl-bf16", Level.FAIL, f"{cfg['path']}: {said}, so {release} trains in bf16, not FP8",
                f"{intent_text(signs)}.\n{release} holds bf16=True for this config "
                f"({'its default when bf16 is unset' if given is None else 'as it says'}), which the Trainer turns "
                "into the Accelerator's mixed precision over fp8.", fix_text(facts)))
        else:
            out.append(Finding("lint.trl-bf16", Level.OK, f"{cfg['path']}: bf16: false, so fp8 can reach the "
                               "Accelerator", f"{intent_text(signs)}."))
    return out


def check_peft_over_fp8(facts: dict[str, Any]) -> list[Finding]:
    """PEFT installed, FP8 asked, torchao the backend: what the lab saw LoRA do over torchao FP8 in this release."""
    version, torchao = pkg(facts, "peft"), pkg(facts, "torchao")
    if not version or not torchao or not intent(facts):
        return []
    versions = {"peft": version, "torchao": torchao}
    broken = predict_peft(versions, order="peft_then_prepare", r=8)
    if broken.get("outcome") == "raised":
        return [Finding("frontend.peft", Level.FAIL, f"PEFT {version} cannot build a LoRA model with torchao "
                        f"{torchao} installed", f"get_peft_model raises {broken['type']}: {broken['message']} "
                        "(observed with PEFT 0.18.0 and torchao 0.18.0; PEFT 0.21.2 works).",
                        "pip install 'peft>=0.21'")]
    if predict_peft(versions, order="peft_then_prepare", r=FP8_DIM_MULTIPLE).get("adapters_train") is False:
        return [Finding("frontend.peft", Level.WARN, f"PEFT {version} with torchao FP8: a LoRA rank that is a multiple "
                        f"of {FP8_DIM_MULTIPLE} turns the adapters into Float8Linear, and they did not train",
                        "Observed (PEFT 0.21.2, accelerate 1.15, torchao 0.18): under Accelerate's FP8 conversion "
                        "the base layers become Float8Linear, and adapters whose rank is a multiple of 16 too; one "
                        "optimizer step then changed none of the adapter parameters. Rank 8 adapters stay fp32 "
                        "Linear and train; so do adapters added after torchao's convert_to_float8_training.")]
    return []
