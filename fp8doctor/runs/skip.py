"""Whether a spec can run here, decided from the doctor's own capability checks before anything is spawned.

Facts are cheap and cached per process: installed versions via importlib.metadata, GPUs via nvidia-smi/NVML
(a torch child probe only when a driver exists but neither answers), and a `transformer_engine.pytorch` import
probe only when TE is installed.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from fp8doctor.capability import accelerate_has_recipe, backend_available, fp8_family_supported, te_recipe_family
from fp8doctor.runs.backends.te import UNCHECKED_ENV
from fp8doctor.runs.spec import BUGGY_ENTRIES, RunSpec


@functools.lru_cache(maxsize=1)
def _cached_facts() -> dict[str, Any]:
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
    ccs = [tuple(x["cc"]) for x in g["visible"] if x.get("cc")]
    return {
        "installed": installed,
        "te_import_error": te.get("error"),
        "cc": max(ccs) if ccs else None,
        "gpu_count": g["count"],
        "gpu_status": g["status"],
    }


def machine_facts() -> dict[str, Any]:
    """The facts skip_reason needs: installed, te_import_error, cc (best visible GPU or None), gpu_count."""
    return dict(_cached_facts())


def skip_reason(spec: RunSpec, facts: dict[str, Any] | None = None) -> str | None:
    """A sentence saying why this spec cannot run on this machine, or None when it can."""
    facts = machine_facts() if facts is None else facts
    if spec.backend == "none":
        return None
    if spec.backend == "te" and spec.entry in BUGGY_ENTRIES and spec.env.get(UNCHECKED_ENV) == "1":
        return None  # the handler is built without TE; Accelerate raises before anything uses TE
    ok, why = backend_available(spec.backend, facts.get("installed", {}), facts.get("te_import_error"))
    if not ok:
        return why
    ok, why = accelerate_has_recipe(spec.backend, facts.get("installed", {}).get("accelerate"))
    if not ok:
        return why
    cc = facts.get("cc")
    on_cpu = spec.device == "cpu" or (spec.device is None and cc is None and not facts.get("gpu_count"))
    if spec.backend == "te":
        ok, why = fp8_family_supported(cc, te_recipe_family(spec.recipe))
        if not ok:
            return why
        from fp8doctor.runs.backends.te import ACCELERATE_RECIPES

        if spec.entry != "native" and spec.recipe not in ACCELERATE_RECIPES:
            return (f"Accelerate's TERecipeKwargs can only express DelayedScaling and MXFP8 block scaling; the TE "
                    f"recipe {spec.recipe!r} runs through the native entry (TE autocast) only.")
    elif spec.backend == "torchao" and not on_cpu:
        ok, why = fp8_family_supported(cc, "per-tensor")
        if not ok:
            return why
    if spec.nproc > 1 and not on_cpu and facts.get("gpu_count", 0) < spec.nproc:
        return f"{spec.nproc} processes need {spec.nproc} GPUs; {facts.get('gpu_count', 0)} visible."
    return None
