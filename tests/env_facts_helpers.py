"""Hand-made facts for rule tests, built by the command's own constructor (fp8doctor.facts.model.build_facts), so a
rule sees exactly the shape and derived parts the command would give it."""

from __future__ import annotations

import copy
from typing import Any

from fp8doctor.facts.environ import environ_facts
from fp8doctor.facts.gpu import fp8_support
from fp8doctor.facts.model import build_facts

BASE_PACKAGES = {
    "torch": "2.6.0", "transformer-engine": None, "transformer-engine-cu12": None, "transformer-engine-cu13": None,
    "transformer-engine-torch": None, "accelerate": "1.15.0", "transformers": "5.24.0", "torchao": "0.18.0",
    "msamp": None, "deepspeed": None, "flash-attn": None, "llamafactory": None, "trl": None, "numpy": "2.1.0",
}
H100 = {"index": "0", "name": "NVIDIA H100 80GB HBM3", "cc": [9, 0], "memory_mib": 81559, "driver": "550.54"}


def make_facts(*, gpus: list[dict[str, Any]] | None = None, packages: dict[str, str | None] | None = None,
               env: dict[str, str] | None = None, configs: list[dict[str, Any]] | None = None,
               accelerate_config: dict[str, Any] | None = None, te_import: dict[str, Any] | None = None,
               torch_cuda: str | None = "12.4") -> dict[str, Any]:
    gpus = [copy.deepcopy(H100)] if gpus is None else gpus
    pkgs = {**BASE_PACKAGES, **(packages or {})}
    return dict(build_facts(
        gpu={"source": "test", "all": gpus, "visible": gpus, "count": len(gpus),
             "status": f"{len(gpus)} CUDA GPU(s) visible" if gpus else "no CUDA device: test",
             "fp8_support": fp8_support(gpus)},
        torch_build={"installed": True, "version": pkgs["torch"], "cuda": torch_cuda, "cudnn": None},
        packages=pkgs,
        te_import=te_import or {"attempted": False, "ok": None, "error": None, "reason": "not installed"},
        environ=environ_facts(env or {}),
        accelerate_config=accelerate_config or {"path": "/nonexistent/default_config.yaml",
                                                "chosen_by": "default location", "exists": False},
        configs=configs or [],
    ))


def cfg(kind: str, data: dict[str, Any], path: str | None = None) -> dict[str, Any]:
    return {"path": path or f"{kind}.yaml", "kind": kind, "label": kind, "data": data}


def acc_cfg(data: dict[str, Any], path: str = "/home/u/.cache/huggingface/accelerate/default_config.yaml"
            ) -> dict[str, Any]:
    from fp8doctor.facts.accelerate_config import summarize

    return {"path": path, "chosen_by": "default location", "exists": True, "data": data, **summarize(data)}


LF_REFERENCE = {
    "model_name_or_path": "Qwen/Qwen2.5-7B", "stage": "sft", "do_train": True, "finetuning_type": "full",
    "fp8": True, "fp8_backend": "te", "dataset": "alpaca_en_demo", "template": "qwen", "cutoff_len": 512,
    "max_samples": 10, "per_device_train_batch_size": 1, "bf16": True, "output_dir": "test_fp8_output",
}


def by_id(findings: list[Any], prefix: str) -> list[Any]:
    return [f for f in findings if f.id.startswith(prefix)]
