"""Accelerate config rules: bf16 in the config while FP8 is intended, fp8_config backend, AO + FSDP limits."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.fixes import fixes_for, render_all
from fp8doctor.knowledge.fp8_config_keys import unread_keys
from fp8doctor.knowledge.generations import intended_backend
from fp8doctor.knowledge.predict import MIXED_PRECISIONS, launch_rejects, mixed_precision_problem
from fp8doctor.rules.common import NO_INTENT, configs_of, intent, intent_text, truthy


def _sources(facts: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = [(c["path"], c["data"]) for c in configs_of(facts, "accelerate")]
    acc = facts.get("accelerate_config", {})
    if acc.get("exists") and acc.get("path") not in {p for p, _ in out}:
        out.append((acc["path"], acc.get("data", {})))
    return out


def check_config_precision(facts: dict[str, Any]) -> list[Finding]:
    signs = intent(facts)
    sources = _sources(facts)
    if not sources:
        path = facts.get("accelerate_config", {}).get("path")
        return [Finding("accel-config.precision", Level.SKIP, "No Accelerate config file",
                        f"none at {path}; `accelerate launch` uses its defaults there.")]
    out = []
    for path, data in sources:
        mp = str(data.get("mixed_precision", "no"))
        problem = mixed_precision_problem(mp)
        if problem:
            near = mp.strip().lower()
            out.append(Finding(
                "accel-config.precision", Level.FAIL, f"{path}: mixed_precision {mp!r} is not one of "
                f"{', '.join(MIXED_PRECISIONS)}", f"`accelerate launch --config_file {path}` exports it as "
                f"ACCELERATE_MIXED_PRECISION={mp}. " + problem + ".",
                f"In {path}: mixed_precision: {near if near in MIXED_PRECISIONS else 'fp8'}"))
            continue
        if not signs:
            out.append(Finding("accel-config.precision", Level.SKIP, f"{path}: mixed_precision {mp}", NO_INTENT))
        elif mp.lower() == "fp8":
            out.append(Finding("accel-config.precision", Level.OK, f"{path}: mixed_precision fp8"))
        else:
            out.append(Finding(
                "accel-config.precision", Level.FAIL, f"{path}: mixed_precision {mp} while FP8 is intended",
                intent_text(signs) + f"; `accelerate launch` with this file sets ACCELERATE_MIXED_PRECISION={mp}.",
                f"In {path}: mixed_precision: fp8 (and an fp8_config with backend TE or AO), then start with "
                f"`accelerate launch --config_file {path}`: Accelerator() alone never reads the file."))
    return out


def check_fp8_config_backend(facts: dict[str, Any]) -> list[Finding]:
    out = []
    for path, data in _sources(facts):
        fp8 = data.get("fp8_config")
        if not isinstance(fp8, dict) or "backend" not in fp8:
            continue
        b = str(fp8["backend"])
        if b in ("TE", "AO", "MSAMP"):
            out.append(Finding("accel-config.fp8-backend", Level.OK, f"{path}: fp8_config backend {b}"))
        elif b.upper() in ("TE", "AO", "MSAMP"):
            out.append(Finding(
                "accel-config.fp8-backend", Level.FAIL, f"{path}: fp8_config backend {b!r} must be upper case",
                f"`accelerate launch` copies it into ACCELERATE_FP8_BACKEND={b}, which Accelerator.fp8_backend "
                f"rejects: ValueError: '{b}' is not a valid FP8BackendType.", f"backend: {b.upper()}"))
        else:
            out.append(Finding("accel-config.fp8-backend", Level.FAIL, f"{path}: unknown fp8_config backend {b!r}",
                               "Accelerate knows TE, AO (torchao) and MSAMP.", "backend: TE   # or AO"))
    return out


def check_ao_fsdp_cpu_ram(facts: dict[str, Any]) -> list[Finding]:
    out = []
    env_backend = facts.get("environ", {}).get("accelerate_fp8", {}).get("ACCELERATE_FP8_BACKEND", "")
    for path, data in _sources(facts):
        fp8 = data.get("fp8_config") if isinstance(data.get("fp8_config"), dict) else {}
        backend = str(fp8.get("backend") or env_backend).upper()
        fsdp = data.get("fsdp_config") if isinstance(data.get("fsdp_config"), dict) else {}
        cpu_ram = fsdp.get("fsdp_cpu_ram_efficient_loading", fsdp.get("cpu_ram_efficient_loading"))
        if backend == "AO" and str(data.get("distributed_type", "")).upper() == "FSDP" and truthy(cpu_ram):
            out.append(Finding(
                "accel-config.ao-fsdp", Level.FAIL, f"{path}: torchao FP8 + FSDP + cpu_ram_efficient_loading",
                "Accelerator.__init__ raises ValueError: torchao with FSDP2 and cpu_ram_efficient_loading is not "
                "supported.", "fsdp_config:\n  fsdp_cpu_ram_efficient_loading: false"))
    return out


def check_launch_accepts(facts: dict[str, Any]) -> list[Finding]:
    """`accelerate launch` refuses or crashes on some files before the script starts (lab-observed reasons)."""
    out = []
    for path, data in _sources(facts):
        why = launch_rejects(data, facts.get("packages", {}).get("accelerate"),
                             torchao=bool(facts.get("packages", {}).get("torchao")),
                             te=bool(facts.get("packages", {}).get("transformer-engine")),
                             msamp=bool(facts.get("packages", {}).get("msamp")))
        if why:
            out.append(Finding(
                "accel-config.launch", Level.FAIL, f"{path}: `accelerate launch` would stop before your script starts",
                f"`accelerate launch --config_file {path}` stops before the script starts: {why}",
                (f"In {path}: distributed_type: 'NO'   # or MULTI_GPU / FSDP / DEEPSPEED as you train\n"
                 if "distributed_type" in why else "") + render_all(fixes_for(facts, intended_backend(facts))[:1])))
    return out


def check_fp8_config_keys_unused(facts: dict[str, Any]) -> list[Finding]:
    """Keys of fp8_config that no recipe class of the installed release reads through `accelerate launch`
    (knowledge/fp8_config_keys.unread_keys, observed per release by the lab's fp8_config_keys probe)."""
    out = []
    accelerate = facts.get("packages", {}).get("accelerate")
    for path, data in _sources(facts):
        fp8 = data.get("fp8_config") if isinstance(data.get("fp8_config"), dict) else {}
        unread = unread_keys(accelerate, fp8) if fp8 else None
        if not unread:
            continue
        out.append(Finding(
            "accel-config.fp8-keys", Level.WARN, f"{path}: fp8_config keys no recipe of accelerate {accelerate} "
            "reads: " + ", ".join(unread),
            "`accelerate launch` turns fp8_config into ACCELERATE_FP8_* variables, but no recipe class of this release "
            "reads these (lab-observed per release and backend, docs/generations.md): they change nothing. A key "
            "`accelerate config`'s questionnaire writes under another name (amax_history_length, "
            "amax_compute_algorithm, optimization_level) is one of them; torchao's own settings come from a "
            "Float8LinearConfig passed in AORecipeKwargs(config=...).",
            f"Remove {', '.join(unread)} from fp8_config in {path}."))
    return out
