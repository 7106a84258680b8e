"""Collect every fact into one JSON-serialisable dict: bad input first (UsageError), then child probes in
parallel with the cheap in-process reads. Rendering happens later, on this dict only."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Mapping

from fp8doctor import SCHEMA_VERSION, __version__, needs
from fp8doctor.configs import load_config
from fp8doctor.facts import gpu, packages, probes, stack_import
from fp8doctor.facts.accelerate_config import accelerate_config_facts
from fp8doctor.facts.environ import environ_facts
from fp8doctor.facts.model import Facts, build_facts
from fp8doctor.system import target

PROBE_TIMEOUT_S = 30.0


def collect_facts(config_paths: Iterable[str] = (), accelerate_config: str | None = None,
                  environ: Mapping[str, str] | None = None, probe_timeout_s: float = PROBE_TIMEOUT_S,
                  what_if: Mapping[str, str] | None = None, probe_imports: bool = False) -> Facts:
    """Every fact; `what_if` replaces installed versions ({package: version}) before any rule or prediction reads
    them (nothing is installed). The training stack's imports are probed where stack_import.worth_probing says
    so, or always with `probe_imports`."""
    t0 = time.monotonic()
    env = dict(os.environ if environ is None else environ)
    configs = [load_config(p) for p in config_paths]
    acc_cfg = accelerate_config_facts(accelerate_config, env)

    versions = packages.package_versions()
    wanted: dict[str, str] = {}
    if packages.te_installed(versions):
        wanted["te_import"] = packages.TE_IMPORT_PROBE
    if gpu.driver_present() and not shutil.which("nvidia-smi") and importlib.util.find_spec("pynvml") is None:
        wanted["torch_gpu"] = gpu.TORCH_PROBE
    started = probes.start_probes(wanted, env)
    # Its own, longer deadline: a broken import can take a minute to fail on a loaded machine.
    probe_stack = stack_import.wanted(versions) and (probe_imports or stack_import.worth_probing(versions)[0])
    stack_started = probes.start_probes({"stack_import": stack_import.PROBE} if probe_stack else {}, env)

    smi = gpu.from_nvidia_smi()
    nvml = gpu.from_nvml() if smi[0] is None else (None, "not needed")
    torch_build = gpu.torch_build()
    results = probes.finish_probes(started, probe_timeout_s)
    results.update(probes.finish_probes(stack_started, max(probe_timeout_s, stack_import.TIMEOUT_S)))

    interp = target.snapshot()
    facts = build_facts(
        fp8doctor={"version": __version__, "schema_version": SCHEMA_VERSION},
        platform={
            "python": interp["python"],
            "executable": interp["executable"],
            "system": interp["system"],
            "cpu_count": os.cpu_count(),
            "diagnosed_by": None if not target.is_other() else {"executable": sys.executable,
                                                                "python": platform.python_version()},
        },
        gpu=gpu.gpu_facts(env, torch_probe=results.get("torch_gpu"), smi=smi, nvml=nvml),
        torch_build=torch_build,
        packages=versions,
        accelerator_patches=interp.get("accelerator_patches") or {},
        te_import=packages.te_import_fact(versions, results.get("te_import")),
        stack_import=stack_import.stack_import_fact(versions, results.get("stack_import")),
        runs=needs.facts(),
        environ=environ_facts(env),
        accelerate_config=acc_cfg,
        configs=configs,
        probes={name: {k: v for k, v in r.items() if k != "result"} for name, r in results.items()},
        what_if=what_if,
    )
    if results.get("torch_gpu", {}).get("ok"):
        r = results["torch_gpu"]["result"]
        facts["torch_build"].update(cuda_runtime_probe=r.get("torch_cuda"), cudnn_probe=r.get("cudnn"))
    facts["collect_seconds"] = round(time.monotonic() - t0, 3)
    return facts
