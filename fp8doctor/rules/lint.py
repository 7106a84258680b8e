"""Config lint: FP8 conflicts inside LLaMA-Factory, TrainingArguments and DeepSpeed configs."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.generations import transformers_generation
from fp8doctor.knowledge.predict import auto_backend
from fp8doctor.rules.common import configs_of, pkg, truthy
from fp8doctor.rules.precision import fix_text

# LLaMA-Factory wires its fp8 options into the pt and sft trainers; other stages build trainers without them.
FP8_STAGES = ("pt", "sft")


def _fp8_on(data: dict[str, Any]) -> bool:
    return truthy(data.get("fp8")) and not isinstance(data.get("fp8"), dict)


def check_fp8_with_bf16(facts: dict[str, Any]) -> list[Finding]:
    out = []
    tf = transformers_generation(pkg(facts, "transformers"))
    prec = facts.get("precision") or {}
    for cfg in configs_of(facts, "llamafactory") + configs_of(facts, "training_args"):
        data = cfg["data"]
        if not (_fp8_on(data) and (truthy(data.get("bf16")) or truthy(data.get("fp16")))):
            continue
        flag = "bf16" if truthy(data.get("bf16")) else "fp16"
        how = tf.get("summary", "TrainingArguments turns it into the Accelerator's mixed precision")
        detail = f"transformers {tf.get('version')}: {how}."
        if prec.get("prediction"):
            detail += f"\nPredicted outcome: {prec['prediction'].rstrip('.')}."
        if prec.get("effective") == "fp8":
            out.append(Finding(
                "lint.fp8-with-bf16", Level.OK,
                f"{cfg['path']}: fp8: true with {flag}: true, and fp8 still reaches the Accelerator", detail
                + "\nLLaMA-Factory sets ACCELERATE_MIXED_PRECISION=fp8 in its Trainer after TrainingArguments ran, "
                "and this transformers lets the Accelerator read the variable."))
            continue
        out.append(Finding(
            "lint.fp8-with-bf16", Level.FAIL,
            f"{cfg['path']}: fp8: true with {flag}: true, so {flag} wins over fp8", detail, fix_text(facts)))
    return out


def check_fp8_backend_auto(facts: dict[str, Any]) -> list[Finding]:
    """LLaMA-Factory exports its fp8_backend as FP8_BACKEND, a name nothing reads: Accelerate picks the backend
    itself (predict.auto_backend), torchao first when it is installed (from accelerate 1.8)."""
    out = []
    te = pkg(facts, "transformer-engine")
    picked = auto_backend(pkg(facts, "accelerate"), torchao=bool(pkg(facts, "torchao")), te=bool(te),
                          msamp=bool(pkg(facts, "msamp")))
    for cfg in configs_of(facts, "llamafactory"):
        data = cfg["data"]
        chosen = str(data.get("fp8_backend", "auto")).lower()
        if not _fp8_on(data) or chosen not in ("auto", "te") or picked != "AO":
            continue
        if facts.get("environ", {}).get("accelerate_fp8", {}).get("ACCELERATE_FP8_BACKEND"):
            continue
        title = (f"{cfg['path']}: fp8_backend auto resolves to torchao, not Transformer Engine" if chosen == "auto"
                 else f"{cfg['path']}: fp8_backend te is not what Accelerate reads; torchao is used")
        detail = (f"torchao {pkg(facts, 'torchao')} is installed and accelerate {pkg(facts, 'accelerate')} tries it "
                  "first when no backend is named; LLaMA-Factory exports fp8_backend as FP8_BACKEND, which Accelerate "
                  "does not read (it reads ACCELERATE_FP8_BACKEND)"
                  + (f", although Transformer Engine {te} is installed too." if te else "."))
        out.append(Finding("lint.fp8-backend-auto", Level.WARN, title, detail,
                           "fp8_backend: te\nexport ACCELERATE_FP8_BACKEND=TE   # to train with Transformer Engine"))
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


def check_duplicate_keys(facts: dict[str, Any]) -> list[Finding]:
    """A key written twice in one config: PyYAML (which Accelerate, transformers and LLaMA-Factory read configs
    with) keeps the last value without a word."""
    out = []
    files = [(c["path"], c.get("duplicates") or []) for c in facts.get("configs", [])]
    acc = facts.get("accelerate_config", {})
    if acc.get("exists") and acc.get("path") not in {p for p, _ in files}:
        files.append((acc["path"], acc.get("duplicates") or []))
    for path, dups in files:
        for dup in dups:
            values = dup["values"]
            differ = len({str(v) for _, v in values}) > 1
            shown = ", ".join(f"line {line}: {value}" for line, value in values)
            out.append(Finding(
                "lint.duplicate-key", Level.FAIL if differ else Level.WARN,
                f"{path}: {dup['key']} is set {len(values)} times; the last one wins ({values[-1][1]})",
                f"{shown}. PyYAML keeps the last value of a repeated key and says nothing, so every earlier line is "
                "ignored by the libraries that read this file.",
                f"Keep one {dup['key']} line in {path}, with the value you mean."))
    return out
