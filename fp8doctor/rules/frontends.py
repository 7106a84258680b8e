"""Frontends that set the precision on the user's behalf (TRL, axolotl): warn when one is installed and FP8 is asked,
and lint its configs against what the lab observed (fp8doctor.knowledge.frontends)."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.capability import cc_str
from fp8doctor.knowledge.command_forms import parse
from fp8doctor.knowledge.fixes import axolotl_fix, render
from fp8doctor.knowledge.frontends import (
    AXOLOTL,
    AXOLOTL_ALL_GATHER_KEY,
    AXOLOTL_FP8_MIN_CC,
    AXOLOTL_NO_FP8_GPU,
    FP8_DIM_MULTIPLE,
    FRONTENDS,
    PEFT_FIRST_WORKING,
    Frontend,
    axolotl_fp8_weights_outside,
    axolotl_mixed_precision,
    overrides_fp8,
    predict_peft,
    trl_bf16,
)
from fp8doctor.knowledge.optimizer_params import start_env
from fp8doctor.knowledge.releases import coverage
from fp8doctor.knowledge.values import truthy
from fp8doctor.rules.common import NO_INTENT, configs_of, intent, intent_text, pkg
from fp8doctor.rules.optimizer import fix_text as optimizer_fix_text
from fp8doctor.rules.optimizer import user_start
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
        overrides = overrides_fp8(front, version)
        seen = unobserved(front.package, version)
        if overrides is None:
            out.append(Finding(fid, Level.SKIP, f"{front.name} {version}: not observed by the lab, no claim",
                               seen or f"{intent_text(signs)}."))
            continue
        if not overrides:
            out.append(Finding(fid, Level.OK, f"{front.name} {version} keeps TrainingArguments' bf16 default "
                               "(False)", f"{intent_text(signs)}.{seen}"))
            continue
        if configs_of(facts, front.package):
            continue  # check_trl_config / check_axolotl_config judge the config the user named
        title, why = _override_words(front, version)
        out.append(Finding(fid, Level.WARN, title, f"{intent_text(signs)}.\n{why} Set {front.how}.{seen}",
                           fix_text({**facts, "frontend": front.name})))
    return out


def unobserved(package: str, version: str | None) -> str:
    """' <what the engine does with a release the lab did not run>' for a finding's detail ('' when observed)."""
    note = coverage(package, version).note if version else None
    return f"\n{note}." if note else ""


def _override_words(front: Frontend, version: str) -> tuple[str, str]:
    if front is AXOLOTL:
        return (f"axolotl {version} is installed and FP8 is asked: it sets ACCELERATE_MIXED_PRECISION from its "
                "config's `fp8` key", f"axolotl {version} sets ACCELERATE_MIXED_PRECISION itself in the training "
                "process (prepare_optim_env, run by `axolotl train`): fp8 only when its config says `fp8: true`, "
                "else bf16 (`bf16: true`), fp16 or no, so an exported ACCELERATE_MIXED_PRECISION=fp8 or an "
                "`accelerate launch` FP8 config is replaced (observed on axolotl 0.19.0).")
    return (f"{front.name} {version} is installed and FP8 is asked: its configs set bf16=True unless told otherwise",
            f"{front.name} {version}'s SFTConfig, DPOConfig and GRPOConfig turn an unset bf16 into True in "
            "__post_init__ (observed from TRL 0.19; 0.18 keeps False), and the Trainer then gives the Accelerator "
            "bf16 over ACCELERATE_MIXED_PRECISION=fp8 or an `accelerate launch` FP8 config, without a word.")


def _flag(value: Any) -> bool | None:
    return None if value is None else truthy(value)


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
        elif held is None:
            out.append(Finding("lint.trl-bf16", Level.SKIP, f"{cfg['path']}: {said}, and {release} is not "
                               "observed by the lab: no claim on the bf16 it holds", unobserved("trl", version)))
        elif held:
            out.append(Finding(
                "lint.trl-bf16", Level.FAIL, f"{cfg['path']}: {said}, so {release} trains in bf16, not FP8",
                f"{intent_text(signs)}.\n{release} holds bf16=True for this config "
                f"({'its default when bf16 is unset' if given is None else 'as it says'}), which the Trainer turns "
                f"into the Accelerator's mixed precision over fp8.{unobserved('trl', version)}", fix_text(facts)))
        else:
            out.append(Finding("lint.trl-bf16", Level.OK, f"{cfg['path']}: bf16: false, so fp8 can reach the "
                               "Accelerator", f"{intent_text(signs)}."))
    return out


def _gpu_refuses(facts: dict[str, Any]) -> str | None:
    """Why axolotl's own capability check would refuse fp8 on this machine's GPUs, if it would."""
    gpu = facts.get("gpu") or {}
    ccs = [tuple(d.get("cc") or (0, 0)) for d in gpu.get("visible") or []]
    if not ccs:
        return "no CUDA GPU is visible here"
    if max(ccs) < AXOLOTL_FP8_MIN_CC:
        return f"the best GPU here has compute capability {cc_str(max(ccs))}"
    return None


def check_axolotl_config(facts: dict[str, Any]) -> list[Finding]:
    """An axolotl config (`axolotl train FILE`): its own fp8 key decides ACCELERATE_MIXED_PRECISION."""
    out = []
    signs = intent(facts)
    version = pkg(facts, "axolotl")
    release = f"axolotl {version}" if version else "axolotl (not installed here; observed 0.19.0)"
    for cfg in configs_of(facts, "axolotl"):
        data, path = cfg["data"], cfg["path"]
        if not signs:
            out.append(Finding("lint.axolotl-fp8", Level.SKIP, f"{path}: axolotl config, FP8 not intended",
                               NO_INTENT))
            continue
        fp8 = _flag(data.get("fp8"))
        if not fp8:
            auto = data.get("bf16") == "auto"  # bf16 on a GPU that has it
            got = axolotl_mixed_precision({"bf16": True if auto else _flag(data.get("bf16")),
                                           "fp16": _flag(data.get("fp16"))})
            out.append(Finding(
                "lint.axolotl-fp8", Level.FAIL, f"{path}: no `fp8: true`, so {release} sets "
                f"ACCELERATE_MIXED_PRECISION={got} and trains without FP8",
                f"{intent_text(signs)}.\n{release} sets ACCELERATE_MIXED_PRECISION from this file alone in the "
                "training process, replacing an exported fp8 or an `accelerate launch` FP8 config.", fix_text(facts)))
            continue
        refused = _gpu_refuses(facts)
        notes = [] if _flag(data.get("torch_compile")) else ["axolotl warns that `torch_compile: true` is strongly "
                                                              "recommended with fp8 (speed)"]
        if refused:
            out.append(Finding(
                "lint.axolotl-fp8", Level.WARN, f"{path}: fp8: true, which {release} refuses on a machine "
                f"without a GPU of compute capability {cc_str(AXOLOTL_FP8_MIN_CC)}+ ({refused})",
                f"Run here, `axolotl train` stops in its config validation: \"{AXOLOTL_NO_FP8_GPU}\" (observed on "
                "CPU; its check is compute capability >= 9.0).\n" + "\n".join(notes)))
        else:
            out.append(Finding("lint.axolotl-fp8", Level.OK, f"{path}: fp8: true, so {release} sets "
                               "ACCELERATE_MIXED_PRECISION=fp8 and builds its torchao recipe", "\n".join(notes)))
        outside = axolotl_fp8_weights_outside({"axolotl": version}, {**data, "fp8": True})
        if outside is None and _flag(data.get(AXOLOTL_ALL_GATHER_KEY)):
            out.append(Finding(
                "lint.axolotl-fp8-weights", Level.SKIP, f"{path}: {AXOLOTL_ALL_GATHER_KEY}: true: whether the FP8 "
                f"weights stay in the optimizer is not observed here ({release}, this config's FSDP/DeepSpeed keys)",
                "The lab observed axolotl 0.19.0 without FSDP or DeepSpeed only (probe axolotl_optimizer)."
                + unobserved("axolotl", version)))
        if outside:
            fix = axolotl_fix(parse(facts.get("command")), path, all_gather_off=True)
            out.append(Finding(
                "lint.axolotl-fp8-weights", Level.FAIL, f"{path}: {AXOLOTL_ALL_GATHER_KEY}: true without FSDP, so "
                f"{release}'s FP8 layers' weights leave the optimizer and never train",
                f"{release} builds its own torchao Float8LinearConfig with enable_fsdp_float8_all_gather from this "
                "key; without FSDP, torchao then gives each converted weight a new Parameter inside prepare(), and "
                "the optimizer built before it keeps the old ones (lab-observed with axolotl 0.19.0's own "
                "Accelerator arguments: 4 of 4 FP8 weights outside the optimizer, none trained; 0 with the key "
                f"unset or false).{unobserved('axolotl', version)}", "\n".join(render(fix))))
    return out


def check_peft_over_fp8(facts: dict[str, Any]) -> list[Finding]:
    """PEFT installed, FP8 asked, torchao the backend: what the lab saw LoRA do over torchao FP8 in this release,
    for the user's start (adapters Accelerate converts leave the optimizer where optimizer.fp8-weights fails)."""
    version, torchao = pkg(facts, "peft"), pkg(facts, "torchao")
    if not version or not torchao or not intent(facts):
        return []
    stack, setup, _ = user_start(facts)
    versions = {"peft": version, "torchao": torchao, "accelerate": stack.accelerate}
    seen = unobserved("peft", version) + unobserved("torchao", torchao)
    broken = predict_peft(versions, order="peft_then_prepare", r=8)
    if broken.get("outcome") == "raised":
        first = ".".join(map(str, PEFT_FIRST_WORKING))
        return [Finding("frontend.peft", Level.FAIL, f"PEFT {version} cannot build a LoRA model with torchao "
                        f"{torchao} installed", f"get_peft_model raises {broken['type']}: {broken['message']} "
                        f"(observed with PEFT 0.18.0 and torchao 0.18.0; PEFT {first} and later work).{seen}",
                        f"pip install 'peft>={first}'")]
    if broken.get("outcome") != "ok":
        return [Finding("frontend.peft", Level.SKIP, f"PEFT {version} with torchao {torchao}: not observed by the "
                        "lab, no claim", seen.strip() or "The lab's peft_fp8 probe did not run this pair.")]
    fp8_rank = predict_peft(versions, order="peft_then_prepare", r=FP8_DIM_MULTIPLE, env=start_env(stack, setup))
    if fp8_rank.get("outcome") != "ok":
        return [Finding("frontend.peft", Level.SKIP, f"PEFT {version}: whether LoRA adapters Accelerate converts to "
                        f"FP8 train is not observed for accelerate {stack.accelerate} with torchao {torchao}",
                        "The lab's optimizer_params probe did not run these releases (docs/generations.md)." + seen)]
    if fp8_rank.get("adapters_train") is False:
        return [Finding("frontend.peft", Level.WARN, f"PEFT {version} with torchao FP8: LoRA adapters whose rank is a "
                        f"multiple of {FP8_DIM_MULTIPLE} become FP8 layers, and with this start they never train",
                        "Observed (PEFT 0.19-0.21, accelerate 1.15, torchao 0.18): under Accelerate's FP8 conversion "
                        "the base layers become Float8Linear, and adapters whose rank is a multiple of 16 too; those "
                        "adapters get new Parameters in prepare() (float8 all-gather on in the config Accelerate "
                        "builds) and one optimizer step changed none of them (0 of 12). With the all-gather off, or "
                        "on accelerate 1.12, all 12 trained. The same cause as optimizer.fp8-weights, and the same "
                        "fix." + seen, optimizer_fix_text(facts))]
    return [Finding("frontend.peft", Level.OK, f"PEFT {version} with torchao FP8: LoRA adapters train with this start "
                    f"(those of a rank that is a multiple of {FP8_DIM_MULTIPLE} as FP8 layers)", seen.strip())]
