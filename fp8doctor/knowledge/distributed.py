"""What Accelerate does with a distributed plugin (FSDP1, FSDP2, DeepSpeed ZeRO) and FP8, per release.

Each rule is held against lab/observations/dist-*.json (lab/probes/distributed.py: two ranks under torchrun over
gloo, torchao FP8 with emulate=True, per case) by tests/test_distributed_predictions.py; docs/generations.md's
distributed table is rendered from the same observations. The cells: accelerate 1.6, 1.9, 1.12, 1.15 with
deepspeed 0.19.8. A source lead that the lab contradicted: accelerate <= 1.10 sets its state's `_mixed_precision`
to "no" under DeepSpeed, but on 1.6 FP8 (torchao) is still converted and trains inside the DeepSpeed engine.
"""

from __future__ import annotations

from typing import Any

from fp8doctor.knowledge.versions import parse_version

PLUGINS = ("fsdp1", "fsdp2", "deepspeed-z2", "deepspeed-z3")
# DeepSpeed's own assertion when Accelerate counts one process per rank (its state has no process backend on a
# CPU-only machine): observed on accelerate 1.15.
DEEPSPEED_BATCH_MESSAGE = ("Check batch related parameters. train_batch_size is not equal to micro_batch_per_gpu * "
                           "gradient_acc_step * world_size")
# The DeepSpeed plugin without ACCELERATE_USE_CPU on CPU: 1.6 and 1.12 train (state DEEPSPEED, 2 processes, torchao
# converts before deepspeed.initialize, 13/13 FP8 layers inside the engine); 1.15 fails as above. 1.13 and 1.14
# were not observed: the first failing release the lab saw is used.
DEEPSPEED_CPU_FAILS_FROM = "1.15"
# Under DeepSpeed with fp8 the state reports "bf16" on 1.6 (DeepSpeed's config precision; FP8 still converted) and
# "fp8" on 1.12 and 1.15 (1.9 not observed: its DeepSpeed op build outlived the probe's limit).
DEEPSPEED_REPORTS_FP8_FROM = "1.12"
CPU_DROPS_PLUGIN = ("with ACCELERATE_USE_CPU=true Accelerate's state stays MULTI_CPU and drops the FSDP or "
                    "DeepSpeed plugin without a word: prepare() wraps the model in DDP (lab: accelerate 1.6-1.15)")
DEEPSPEED_CPU = (
    "The deepspeed entry needs GPUs: on CPU " + CPU_DROPS_PLUGIN + "; without it the state selects DEEPSPEED "
    "(DeepSpeed's CPU accelerator, gloo): accelerate 1.6 and 1.12 train, but 1.15 counts one process per rank and "
    f"prepare() fails DeepSpeed's batch check (AssertionError: {DEEPSPEED_BATCH_MESSAGE} ...).")
DEEPSPEED_MISSING = "DeepSpeed is not installed; the deepspeed entry needs it (pip install deepspeed)."


def _at_least(version: str | None, threshold: str) -> bool:
    parsed = parse_version(version)
    return parsed is not None and parsed >= parse_version(threshold)


def deepspeed_on_cpu(accelerate: str | None, precision: str) -> dict[str, Any]:
    """Accelerate with the DeepSpeed plugin and no ACCELERATE_USE_CPU on a CPU-only machine (lab-observed)."""
    fp8 = precision == "fp8"
    out: dict[str, Any] = {"distributed_type": "DEEPSPEED",
                           "order": ["convert", "deepspeed_initialize"] if fp8 else ["deepspeed_initialize"]}
    if fp8:
        out["fp8_backend"] = "AO"
    if _at_least(accelerate, DEEPSPEED_CPU_FAILS_FROM):
        out.update({"num_processes": 1, "outcome": "raised", "stage": "prepare", "type": "AssertionError",
                    "mixed_precision": precision})
        return out
    reported = precision if not fp8 or _at_least(accelerate, DEEPSPEED_REPORTS_FP8_FROM) else "bf16"
    out.update({"num_processes": 2, "outcome": "ok", "mixed_precision": reported, "prepared_class": "DeepSpeedEngine",
                "fp8_inside_units": 13 if fp8 else 0})
    return out


def deepspeed_entry_skip(deepspeed: str | None, on_cpu: bool) -> str | None:
    """Why the matrix's deepspeed entry cannot run here, or None."""
    if not deepspeed:
        return DEEPSPEED_MISSING
    return DEEPSPEED_CPU if on_cpu else None


def predict(accelerate: str | None, case: dict[str, Any]) -> dict[str, Any]:
    """The observable fields of one lab/probes/distributed.py case (its `inputs`) on this accelerate release."""
    fp8 = case["precision"] == "fp8"
    out: dict[str, Any] = {}
    if case["use_cpu"]:
        # distributed_type is read before the case sets the state (force_state)
        out.update({"distributed_type": "MULTI_CPU", "mixed_precision": case["precision"],
                    "fp8_backend": "AO" if fp8 else None, "num_processes": 2, "outcome": "ok", "fp8_layers": 13})
        if case.get("force_state") and case["plugin"] == "fsdp2":
            out.update(fsdp2_prepare(bool(case.get("all_gather"))))
        elif case.get("force_state"):
            out.update(FSDP1_ON_CPU)
            del out["fp8_layers"]
        elif not case.get("force_state"):
            out.update(CPU_DROP)
        return out
    out.update(deepspeed_on_cpu(accelerate, case["precision"]))
    return out


# FSDP1 with the state set on CPU: Accelerate converts, then wraps with FSDP1, whose init refuses the CPU
# `device_id` Accelerate passes (torch/distributed/fsdp/_init_utils.py:_get_compute_device). FSDP1 + FP8 therefore
# cannot be observed past prepare() on CPU (observed 1.6, 1.9).
FSDP1_CPU_MESSAGE = "Inconsistent compute device and `device_id` on rank"
FSDP1_ON_CPU = {"outcome": "raised", "stage": "prepare", "type": "ValueError", "order": ["convert", "fsdp1_wrap"]}
# With ACCELERATE_USE_CPU=true: the plugin dropped, the model converted and wrapped in DDP.
CPU_DROP = {"prepared_class": "DistributedDataParallel", "units": 0, "fp8_inside_units": 0, "order": ["convert"]}


def fsdp2_prepare(all_gather: bool) -> dict[str, Any]:
    """Accelerate's FSDP2 prepare with torchao FP8 (observed 1.6-1.15): every eligible Linear converted before
    `fully_shard` wraps the decoder layers, all 13 inside sharded units; float8 all-gather when the config asks."""
    return {"prepared_class": "FSDPLlamaForCausalLM", "order": ["convert", "fully_shard"], "fp8_inside_units": 13,
            "float8_all_gather": all_gather}
