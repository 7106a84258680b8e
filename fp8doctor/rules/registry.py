"""The checks by stable id, for `fp8doctor env --list-checks` and `--check ID`: each id names one rule function,
what it checks, and the finding ids it can give (docs/env.md lists the same table; tests hold both to it).
An id never changes meaning; a new check gets a new id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fp8doctor.findings import Check, Finding, run_checks
from fp8doctor.rules import (
    accelerate_config,
    backends,
    distributed,
    environ,
    frontends,
    gpu,
    lint,
    optimizer,
    precision,
    stack,
    versions,
)
from fp8doctor.system.errors import UsageError


@dataclass(frozen=True)
class CheckInfo:
    id: str
    run: Check
    what: str  # one line: what it checks
    gives: tuple[str, ...]  # finding ids it can give ('*' ends a family)

    def gave(self, finding_id: str) -> bool:
        return any(finding_id == g or (g.endswith("*") and finding_id.startswith(g[:-1])) for g in self.gives)


CHECKS: tuple[CheckInfo, ...] = (
    CheckInfo("gpu", gpu.check_gpu, "a CUDA GPU is visible, with compute capability 8.9+ for FP8",
              ("gpu.ok", "gpu.none", "gpu.too-old")),
    CheckInfo("gpu.fp8-families", gpu.check_fp8_families, "which FP8 recipe families the visible GPU supports",
              ("gpu.fp8-families",)),
    CheckInfo("backend.any", backends.check_any_backend, "at least one FP8 backend (torchao, TE) is usable",
              ("backend.any", "backend.none")),
    CheckInfo("backend.torchao", backends.check_torchao, "torchao is installed (needed when you name it)",
              ("backend.torchao", "backend.torchao-missing")),
    CheckInfo("backend.te", backends.check_transformer_engine, "Transformer Engine is installed, imports and "
              "supports FP8 here", ("backend.te", "backend.te-missing", "backend.te-import", "backend.te-fp8")),
    CheckInfo("backend.te-recipes", backends.check_te_release, "the recipes the installed TE release has, and "
              "whether each runs here", ("backend.te-recipes",)),
    CheckInfo("versions.accelerate-te-api", backends.check_accelerate_te, "Accelerate's TE integration uses only "
              "names the installed TE has", ("versions.accelerate-te-api",)),
    CheckInfo("versions.te-torch", versions.check_te_packages, "TE's packages agree with each other and with "
              "torch's CUDA", ("versions.te-torch",)),
    CheckInfo("versions.accelerate-te", versions.check_accelerate_te_options, "no recipe option that the "
              "installed TE removed would reach it", ("versions.accelerate-te",)),
    CheckInfo("versions.accelerate", versions.check_accelerate_version, "the accelerate release trains FP8 the "
              "way you ask for it", ("versions.accelerate", "versions.accelerate-mxfp8")),
    CheckInfo("env.mixed-precision", environ.check_env_mixed_precision, "ACCELERATE_MIXED_PRECISION is exactly "
              "a value Accelerate accepts, and fp8 where FP8 is intended", ("env.mixed-precision",)),
    CheckInfo("env.fp8-values", environ.check_fp8_env_values, "every ACCELERATE_FP8_* value is one Accelerate "
              "accepts and reads", ("env.fp8-values",)),
    CheckInfo("env.unread", environ.check_unread_lookalikes, "no look-alike variable that nothing reads",
              ("env.unread.*",)),
    CheckInfo("accel-config.precision", accelerate_config.check_config_precision, "the Accelerate config's "
              "mixed_precision matches FP8 intent", ("accel-config.precision",)),
    CheckInfo("accel-config.launch", accelerate_config.check_launch_accepts, "`accelerate launch` accepts the "
              "config", ("accel-config.launch",)),
    CheckInfo("accel-config.fp8-backend", accelerate_config.check_fp8_config_backend, "fp8_config.backend is TE, "
              "AO or MSAMP", ("accel-config.fp8-backend",)),
    CheckInfo("accel-config.fp8-keys", accelerate_config.check_fp8_config_keys_unused, "fp8_config keys the "
              "backend reads", ("accel-config.fp8-keys",)),
    CheckInfo("accel-config.ao-fsdp", accelerate_config.check_ao_fsdp_cpu_ram, "torchao FP8 with FSDP without "
              "fsdp_cpu_ram_efficient_loading", ("accel-config.ao-fsdp",)),
    CheckInfo(optimizer.ID, optimizer.check_fp8_weights_in_optimizer, "the FP8 layers' weights stay the "
              "parameters the optimizer holds (torchao float8 all-gather off)", (optimizer.ID,)),
    CheckInfo("lint.fp8-with-bf16", lint.check_fp8_with_bf16, "a config's fp8: true is not overridden by "
              "bf16: true", ("lint.fp8-with-bf16",)),
    CheckInfo("lint.fp8-backend-auto", lint.check_fp8_backend_auto, "LLaMA-Factory's fp8_backend reaches "
              "Accelerate", ("lint.fp8-backend-auto",)),
    CheckInfo("lint.fp8-quantization", lint.check_fp8_quantization, "fp8: true without quantization_bit",
              ("lint.fp8-quantization",)),
    CheckInfo("lint.fp8-stage", lint.check_fp8_stage, "fp8: true on a LLaMA-Factory stage that supports it",
              ("lint.fp8-stage",)),
    CheckInfo("lint.deepspeed-fp8", lint.check_deepspeed_fp8, "a DeepSpeed fp8 section (which does not enable "
              "FP8)", ("lint.deepspeed-fp8",)),
    CheckInfo("lint.duplicate-key", lint.check_duplicate_keys, "no config key is written twice (PyYAML keeps the "
              "last value silently)", ("lint.duplicate-key",)),
    CheckInfo("dist.fsdp-version", distributed.check_fsdp_fp8, "FSDP with FP8 is FSDP2 (float8 all-gather and "
              "conversion before sharding)", ("dist.fsdp-version",)),
    CheckInfo("frontend.overrides", frontends.check_frontend_overrides, "no installed frontend (TRL, axolotl) "
              "replaces the FP8 precision you ask for with its own", ("frontend.trl", "frontend.axolotl")),
    CheckInfo("lint.trl-bf16", frontends.check_trl_config, "a TRL config's bf16 (set, or TRL's default) lets fp8 "
              "reach the Accelerator", ("lint.trl-bf16",)),
    CheckInfo("lint.axolotl-fp8", frontends.check_axolotl_config, "an axolotl config sets its own `fp8` key, "
              "which decides its precision (and its GPU check), and keeps its FP8 weights in the optimizer",
              ("lint.axolotl-fp8", "lint.axolotl-fp8-weights")),
    CheckInfo("frontend.peft", frontends.check_peft_over_fp8, "the installed PEFT builds LoRA over torchao FP8 and "
              "its adapters train", ("frontend.peft",)),
    CheckInfo("stack.accelerator-patch", stack.check_accelerator_patches, "no installed trainer framework "
              "(LLaMA-Factory, axolotl, TRL) patches Accelerator.__init__", ("stack.accelerator-patch",)),
    CheckInfo("stack.imports", stack.check_stack_imports, "transformers' Trainer, TrainingArguments and models, "
              "and accelerate's Accelerator import (the error's own cause named when not)", ("stack.imports",)),
    CheckInfo("precision.effective", precision.check_effective_precision, "the mixed precision that really "
              "reaches the Accelerator is fp8 where FP8 is intended", ("precision.effective",)),
)
BY_ID = {c.id: c for c in CHECKS}


def select(ids: list[str]) -> tuple[CheckInfo, ...]:
    """The checks named by --check, in the registry's order; an unknown id is bad usage."""
    unknown = [i for i in ids if i not in BY_ID]
    if unknown:
        raise UsageError(f"unknown check id {unknown[0]!r}; `fp8doctor env --list-checks` lists them: "
                         + ", ".join(BY_ID))
    return tuple(c for c in CHECKS if c.id in ids)


def evaluate_selected(facts: dict[str, Any], ids: list[str]) -> list[Finding]:
    return run_checks([c.run for c in select(ids)], facts)


def listing(fmt: str = "text") -> str:
    """The checks as a table (text or Markdown) or JSON."""
    import json

    from tabulate import tabulate

    if fmt == "json":
        return json.dumps([{"id": c.id, "what": c.what, "gives": list(c.gives)} for c in CHECKS], indent=2) + "\n"
    rows = [[c.id, c.what, ", ".join(c.gives)] for c in CHECKS]
    table = tabulate(rows, headers=["id", "what it checks", "finding ids"],
                     tablefmt="github" if fmt == "md" else "simple")
    return table + "\n\nRun some by id: fp8doctor env --check ID [--check ID ...]\n"
