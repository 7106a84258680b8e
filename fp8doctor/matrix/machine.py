"""What this machine can run, from the same fact readers `fp8doctor env` uses (nvidia-smi / NVML, installed
distributions, a child-process import of `transformer_engine.pytorch` only where TE is installed and a GPU is
visible); no torch import. Cached per process; shared by the matrix planner and the pytest plugin."""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.lru_cache(maxsize=1)
def machine_facts() -> dict[str, Any]:
    """{"gpus": [visible GPUs: index, name, cc], "gpu_count", "cc" (first visible GPU's, or None),
    "gpu_status" (the doctor's sentence), "installed": {dist: version}, "te_import_error"}"""
    from fp8doctor.facts import gpu, packages, probes

    g = gpu.gpu_facts(dict(os.environ))
    gpus = [{"index": str(x.get("index")), "name": x.get("name"), "cc": tuple(x["cc"]) if x.get("cc") else None}
            for x in g["visible"]]
    installed = packages.package_versions()
    te_err = None
    if packages.te_installed(installed) and gpus:
        fact = packages.te_import_fact(installed, probes.run_probes({"te": packages.TE_IMPORT_PROBE}).get("te"))
        te_err = None if fact.get("ok") else str(fact.get("error") or fact.get("reason"))
    return {
        "gpus": gpus,
        "gpu_count": len(gpus),
        "cc": gpus[0]["cc"] if gpus else None,
        "gpu_status": g.get("status"),
        "installed": installed,
        "te_import_error": te_err,
    }
