"""The machine snapshot: what this machine has and can run, read once per process and cached. Every planner,
skip, worker and the pytest plugin read it here; `fp8doctor env` reads the same fact readers (fp8doctor.facts)
with its own, fuller collection.

Read from the doctor's fact readers without importing torch: installed distributions (importlib.metadata), GPUs
(nvidia-smi, else NVML, else a torch child probe where a driver exists but neither answers), and a child import
of `transformer_engine.pytorch` only where TE is installed.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from fp8doctor.knowledge.capability import (
    accelerate_has_recipe,
    backend_available,
    fp8_family_supported,
    te_recipe_supported,
)
from fp8doctor.knowledge.distributed import deepspeed_entry_skip
from fp8doctor.runs.backends.te import UNCHECKED_ENV
from fp8doctor.runs.spec import BUGGY_ENTRIES, RunSpec


@functools.lru_cache(maxsize=1)
def _read() -> dict[str, Any]:
    from fp8doctor.facts import gpu, packages
    from fp8doctor.facts.probes import run_probes

    installed = packages.package_versions()
    probes: dict[str, str] = {}
    smi = gpu.from_nvidia_smi()
    nvml = gpu.from_nvml() if smi[0] is None else (None, "not needed")
    if gpu.needs_torch_probe(smi[0], nvml[0]):
        probes["torch"] = gpu.TORCH_PROBE
    if packages.te_installed(installed):
        probes["te"] = packages.TE_IMPORT_PROBE
    done = run_probes(probes) if probes else {}
    g = gpu.gpu_facts(dict(os.environ), torch_probe=done.get("torch"), smi=smi, nvml=nvml)
    te = packages.te_import_fact(installed, done.get("te"))
    gpus = [{"index": str(x.get("index")), "name": x.get("name"), "cc": tuple(x["cc"]) if x.get("cc") else None}
            for x in g["visible"]]
    ccs = [x["cc"] for x in gpus if x["cc"]]
    te_error = te.get("error")
    return {
        "gpus": gpus,
        "gpu_count": len(gpus),
        # What every visible GPU can run: a matrix spreads its cells over all of them.
        "cc": min(ccs) if ccs else None,
        "gpu_status": g["status"],
        "installed": installed,
        "te_import_error": te_error,
    }


@functools.lru_cache(maxsize=1)
def stack_import() -> dict[str, Any]:
    """Whether the diagnosed interpreter imports the training stack (fp8doctor.facts.stack_import), probed once,
    on the first skip question only (the machine snapshot stays cheap)."""
    from fp8doctor.facts import packages, stack_import
    from fp8doctor.facts.probes import run_probes

    installed = packages.package_versions()
    probe = run_probes({"s": stack_import.PROBE}, stack_import.TIMEOUT_S)["s"] \
        if stack_import.worth_probing(installed)[0] else None
    return stack_import.stack_import_fact(installed, probe)


# What each run imports: every entry builds the tiny Llama; the Trainer entries (and the buggy patches, which run
# the Trainer) import Trainer; all but the native entry build an Accelerator.
RUN_IMPORTS = ("transformers.LlamaForCausalLM", "accelerate.Accelerator")
TRAINER_IMPORTS = ("transformers.Trainer", "transformers.TrainingArguments")


def run_imports(spec: RunSpec) -> tuple[str, ...]:
    needed = RUN_IMPORTS[:1] if spec.entry == "native" else RUN_IMPORTS
    return needed + TRAINER_IMPORTS if spec.entry == "trainer" or spec.entry in BUGGY_ENTRIES else needed


def snapshot() -> dict[str, Any]:
    """{"gpus": [visible GPUs: index, name, cc], "gpu_count", "cc" (the lowest visible compute capability, or
    None), "gpu_status" (the doctor's sentence), "installed": {dist: version}, "te_import_error"}.
    What can run on it is fp8doctor.knowledge.capability's rules applied to these facts (skip_reasons below)."""
    return dict(_read())


def skip_reasons(spec: RunSpec, facts: dict[str, Any] | None = None) -> list[str]:
    """Every sentence saying why this spec cannot run on this machine, most basic first (empty: it can run)."""
    from fp8doctor.facts.stack_import import broken_sentence

    # Given facts without the import fact (a plan's or a test's) say nothing about it.
    broken = broken_sentence(stack_import() if facts is None else facts.get("stack_import") or {}, run_imports(spec))
    facts = snapshot() if facts is None else facts
    if broken:  # most basic of all: nothing trains, whatever the backend
        return [broken[0].upper() + broken[1:]]
    if spec.backend == "none":
        return []
    if spec.backend == "te" and spec.entry in BUGGY_ENTRIES and spec.env.get(UNCHECKED_ENV) == "1":
        return []  # accelerate <= 1.3's handler built without TE: Accelerate raises before anything uses TE
    out: list[str] = []
    ok, why = backend_available(spec.backend, facts.get("installed", {}), facts.get("te_import_error"))
    if not ok:
        out.append(why)
    ok, why = accelerate_has_recipe(spec.backend, facts.get("installed", {}).get("accelerate"))
    if not ok:
        out.append(why)
    cc = facts.get("cc")
    on_cpu = spec.device == "cpu" or (spec.device is None and cc is None and not facts.get("gpu_count"))
    if spec.backend == "te":
        installed = facts.get("installed", {})
        te_version = installed.get("transformer-engine") or installed.get("transformer-engine-torch")
        ok, why = te_recipe_supported(cc, spec.recipe, te_version)
        if not ok:
            out.append(why)
        elif not out:
            from fp8doctor.knowledge.capability import ACCELERATE_RECIPES

            if spec.entry != "native" and spec.recipe not in ACCELERATE_RECIPES:
                out.append(f"Accelerate's TERecipeKwargs can only express DelayedScaling and MXFP8 block scaling; "
                           f"the TE recipe {spec.recipe!r} runs through the native entry (TE autocast) only.")
    elif spec.backend == "torchao" and not on_cpu:
        ok, why = fp8_family_supported(cc, "per-tensor")
        if not ok:
            out.append(why)
    if spec.entry == "deepspeed":
        why = deepspeed_entry_skip(facts.get("installed", {}).get("deepspeed"), on_cpu)
        if why:
            out.append(why)
    if spec.nproc > 1 and not on_cpu and facts.get("gpu_count", 0) < spec.nproc:
        out.append(f"{spec.nproc} processes need {spec.nproc} GPUs; {facts.get('gpu_count', 0)} visible.")
    return list(dict.fromkeys(out))


def skip_reason(spec: RunSpec, facts: dict[str, Any] | None = None) -> str | None:
    """The first reason this spec cannot run here (what a single run reports), or None when it can."""
    reasons = skip_reasons(spec, facts)
    return reasons[0] if reasons else None


def default_device(facts: dict[str, Any] | None = None) -> str:
    """Where a run without an explicit device goes: the first visible GPU, else the CPU."""
    facts = snapshot() if facts is None else facts
    return "cuda:0" if facts.get("gpu_count") else "cpu"
