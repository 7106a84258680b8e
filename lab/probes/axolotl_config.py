"""axolotl: what its config validation, normalisation and optimiser environment do with fp8, bf16, torch_compile and
FSDP activation checkpointing.

Each case: a minimal axolotl config (a tiny Llama saved here as base_model, a local completion dataset) with the
case's precision keys, through `validate_config` (pydantic), `normalize_config` and `prepare_optim_env`, as
`axolotl train` runs them before building its trainer (`via: validate_config`, without GPU capabilities), or
through the CLI's own `axolotl.cli.config.load_cfg(cfg.yaml)` (`via: load_cfg`: the capabilities of this machine's
GPU, none here, validated too; what `axolotl train cfg.yaml` runs first in its training process). Recorded: the
validated config's fp8, bf16, fp16 and torch_compile, ACCELERATE_MIXED_PRECISION after prepare_optim_env (an exported
value given as the case's env), the warnings axolotl logged (their text), or the exception (a pydantic
ValidationError by its errors' messages). No training (axolotl's trainer stack needs a GPU for most of what it loads).

    python lab/probes/axolotl_config.py   (in a cell with axolotl)   -> {"cases": [...]}
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from _common import accelerate_env, describe_exception, main, without_paths

PRECISIONS = {
    "fp8_bf16": {"fp8": True, "bf16": True},
    "fp8_bf16_auto": {"fp8": True, "bf16": "auto"},
    "fp8_nobf16": {"fp8": True, "bf16": False},
    "fp8_bf16_compile": {"fp8": True, "bf16": True, "torch_compile": True},
    "bf16_only": {"bf16": True},
    "fp8_fsdp2_ac": {"fp8": True, "bf16": True, "torch_compile": True, "fsdp_version": 2,
                     "fsdp_config": {"activation_checkpointing": True, "offload_params": False}},
}


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(without_paths(record.getMessage()))


def _assets(root: Path) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
                     ).save_pretrained(root / "model")
    (root / "data.jsonl").write_text("".join(json.dumps({"text": f"hello {i}"}) + "\n" for i in range(8)))
    return {"base_model": str(root / "model"), "datasets": [{"path": str(root / "data.jsonl"), "type": "completion"}],
            "micro_batch_size": 1, "gradient_accumulation_steps": 1, "learning_rate": 1e-4, "num_epochs": 1,
            "sequence_len": 64, "output_dir": str(root / "out")}


def _raised(exc: Exception) -> dict:
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic: the messages, without the whole config echoed as input_value
        return {"outcome": "raised", "type": type(exc).__name__,
                "message": "; ".join(without_paths(e.get("msg", "")) for e in errors())}
    return describe_exception(exc)


def _load_cfg(raw: dict, keep: _Keep) -> dict:
    import yaml
    from axolotl.cli.config import compute_supports_fp8, load_cfg

    Path("cfg.yaml").write_text(yaml.safe_dump(raw))
    gpu_fp8 = compute_supports_fp8()
    try:
        cfg = load_cfg("cfg.yaml")
    except Exception as exc:  # noqa: BLE001
        return {**_raised(exc), "stage": "load_cfg", "gpu_fp8": gpu_fp8, "warnings": keep.lines}
    return {"outcome": "ok", "gpu_fp8": gpu_fp8, "normalized": {k: cfg.get(k) for k in ("fp8", "bf16", "fp16",
                                                                                       "torch_compile")},
            "env_after": accelerate_env(), "warnings": keep.lines}


def run_case(case: dict) -> dict:
    os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"  # its telemetry would retry a network that is not there
    from axolotl.utils.config import normalize_config, validate_config
    from axolotl.utils.dict import DictDefault

    keep = _Keep()
    logging.getLogger().addHandler(keep)  # axolotl's loggers propagate to the root
    raw = {**_assets(Path(os.getcwd())), **PRECISIONS[case["precision"]]}
    if case.get("via") == "load_cfg":
        return _load_cfg(raw, keep)
    result: dict = {}
    try:
        cfg = validate_config(DictDefault(raw))
    except Exception as exc:  # noqa: BLE001
        return {**_raised(exc), "stage": "validate_config", "warnings": keep.lines}
    result["validated"] = {k: cfg.get(k) for k in ("fp8", "bf16", "fp16", "torch_compile")}
    try:
        normalize_config(cfg)
    except Exception as exc:  # noqa: BLE001
        return {**result, **describe_exception(exc), "stage": "normalize_config", "warnings": keep.lines}
    result["normalized"] = {k: cfg.get(k) for k in ("fp8", "bf16", "fp16", "torch_compile")}
    try:
        from axolotl.utils.trainer import prepare_optim_env

        prepare_optim_env(cfg)
    except Exception as exc:  # noqa: BLE001
        return {**result, **describe_exception(exc), "stage": "prepare_optim_env", "warnings": keep.lines}
    return {**result, "outcome": "ok", "env_after": accelerate_env(), "warnings": keep.lines}


EXPORTED_FP8 = {"ACCELERATE_MIXED_PRECISION": "fp8"}


def cases() -> list[dict]:
    out = [{"precision": name, "env": {}} for name in PRECISIONS]
    out.append({"precision": "bf16_only", "env": EXPORTED_FP8})  # fp8 exported, the config's own fp8 unset
    out += [{"precision": "bf16_only", "env": EXPORTED_FP8, "via": "load_cfg"},
            {"precision": "fp8_bf16", "env": {}, "via": "load_cfg"}]
    return out


if __name__ == "__main__":
    main(cases(), run_case, ("transformers",))
