"""Config lint: FP8 conflicts inside LLaMA-Factory, TrainingArguments and DeepSpeed configs."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.generations import fix_lines, transformers_generation
from fp8doctor.rules.common import configs_of, pkg, truthy

# LLaMA-Factory wires its fp8 options into the pt and sft trainers; other stages build trainers without them.
FP8_STAGES = ("pt", "sft")


def _fp8_on(data: dict[str, Any]) -> bool:
    return truthy(data.get("fp8")) and not isinstance(data.get("fp8"), dict)


def check_fp8_with_bf16(facts: dict[str, Any]) -> list[Finding]:
    out = []
    tf = transformers_generation(pkg(facts, "transformers"))
    for cfg in configs_of(facts, "llamafactory") + configs_of(facts, "training_args"):
        data = cfg["data"]
        if not (_fp8_on(data) and (truthy(data.get("bf16")) or truthy(data.get("fp16")))):
            continue
        flag = "bf16" if truthy(data.get("bf16")) else "fp16"
        how = tf.get("summary", "TrainingArguments turns it into the Accelerator's mixed precision")
        prediction = facts.get("precision", {}).get("prediction")
        detail = f"transformers {tf.get('version')}: {how}."
        if prediction:
            detail += f"\nPredicted outcome: {prediction}."
        out.append(Finding(
            "lint.fp8-with-bf16", Level.FAIL,
            f"{cfg['path']}: fp8: true with {flag}: true, so {flag} wins over fp8", detail,
            "\n".join(line.replace("bf16: false", f"{flag}: false") for line in fix_lines(facts)
                      if line.startswith(("bf16: false", "export")))))
    return out


def check_fp8_backend_auto(facts: dict[str, Any]) -> list[Finding]:
    out = []
    for cfg in configs_of(facts, "llamafactory"):
        data = cfg["data"]
        if not _fp8_on(data) or str(data.get("fp8_backend", "auto")).lower() != "auto":
            continue
        if pkg(facts, "torchao"):
            te = pkg(facts, "transformer-engine")
            level = Level.WARN
            title = f"{cfg['path']}: fp8_backend auto resolves to torchao, not Transformer Engine"
            detail = (f"torchao {pkg(facts, 'torchao')} is installed and is tried first (LLaMA-Factory builds "
                      "AORecipeKwargs for auto; Accelerate's own auto-detection also tries AO before TE)"
                      + (f", although Transformer Engine {te} is installed too." if te else "."))
            out.append(Finding("lint.fp8-backend-auto", level, title, detail,
                               "fp8_backend: te   # to train with Transformer Engine"))
    return out


def check_fp8_quantization(facts: dict[str, Any]) -> list[Finding]:
    out = []
    for cfg in configs_of(facts, "llamafactory"):
        data = cfg["data"]
        if _fp8_on(data) and data.get("quantization_bit") not in (None, "", "null"):
            out.append(Finding(
                "lint.fp8-quantization", Level.FAIL,
                f"{cfg['path']}: fp8: true with quantization_bit: {data['quantization_bit']}",
                "FP8 training converts full-precision nn.Linear layers; a bitsandbytes/GPTQ-quantized model has no "
                "such layers to convert, so the two cannot be combined.",
                "Remove quantization_bit (train a full or LoRA model in FP8), or drop fp8 for QLoRA."))
    return out


def check_fp8_stage(facts: dict[str, Any]) -> list[Finding]:
    out = []
    for cfg in configs_of(facts, "llamafactory"):
        data = cfg["data"]
        stage = str(data.get("stage", "sft"))
        if _fp8_on(data) and stage not in FP8_STAGES:
            out.append(Finding(
                "lint.fp8-stage", Level.WARN, f"{cfg['path']}: fp8: true on stage {stage}, which ignores it",
                f"LLaMA-Factory applies its fp8 options in the {' and '.join(FP8_STAGES)} trainers only; "
                f"stage {stage} trains in {'bf16' if truthy(data.get('bf16')) else 'its usual precision'}.",
                "Use stage: sft or pt for FP8, or enable FP8 through Accelerate (accelerate launch with "
                "mixed_precision: fp8)."))
    return out


def check_deepspeed_fp8(facts: dict[str, Any]) -> list[Finding]:
    out = []
    for cfg in configs_of(facts, "deepspeed"):
        if "fp8" in cfg["data"]:
            out.append(Finding(
                "lint.deepspeed-fp8", Level.WARN, f"{cfg['path']}: DeepSpeed config has an `fp8` section",
                "Neither Accelerate nor the HF Trainer turns a DeepSpeed `fp8` section into FP8 training; with "
                "DeepSpeed, FP8 comes from Accelerate's mixed_precision fp8 (Transformer Engine backend).",
                "Remove the `fp8` section; set mixed_precision: fp8 with fp8_config backend TE in the Accelerate "
                "config that points at this DeepSpeed file."))
    return out
