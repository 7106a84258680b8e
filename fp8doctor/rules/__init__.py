"""Rules: each a small function facts -> Finding(s); `evaluate` runs them all (a crashing rule is an error)."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Check, Finding, run_checks
from fp8doctor.rules import accelerate_config, backends, distributed, environ, gpu, lint, precision, versions

ALL_CHECKS: tuple[Check, ...] = (
    gpu.check_gpu,
    gpu.check_fp8_families,
    backends.check_any_backend,
    backends.check_torchao,
    backends.check_transformer_engine,
    backends.check_te_release,
    backends.check_accelerate_te,
    versions.check_te_packages,
    versions.check_accelerate_te_options,
    versions.check_accelerate_version,
    environ.check_env_mixed_precision,
    environ.check_fp8_env_values,
    environ.check_unread_lookalikes,
    accelerate_config.check_config_precision,
    accelerate_config.check_launch_accepts,
    accelerate_config.check_fp8_config_backend,
    accelerate_config.check_fp8_config_keys_unused,
    accelerate_config.check_ao_fsdp_cpu_ram,
    lint.check_fp8_with_bf16,
    lint.check_fp8_backend_auto,
    lint.check_fp8_quantization,
    lint.check_fp8_stage,
    lint.check_deepspeed_fp8,
    distributed.check_fsdp_fp8,
    precision.check_effective_precision,
)


def evaluate(facts: dict[str, Any]) -> list[Finding]:
    return run_checks(ALL_CHECKS, facts)
