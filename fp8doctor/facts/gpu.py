"""GPU facts without importing torch here: nvidia-smi, else NVML (pynvml) if installed, else a torch child probe.
"No CUDA device" is a normal result with a sentence saying why."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

from fp8doctor.facts.probes import probe_code
from fp8doctor.knowledge.capability import FAMILY_MIN_CC, fp8_family_supported

SMI_FIELDS = ("index", "name", "compute_cap", "memory.total", "driver_version")

TORCH_PROBE = probe_code(
    "import torch\n"
    "gpus = []\n"
    "if torch.cuda.is_available():\n"
    "    for i in range(torch.cuda.device_count()):\n"
    "        p = torch.cuda.get_device_properties(i)\n"
    "        gpus.append({'index': i, 'name': p.name, 'cc': [p.major, p.minor],\n"
    "                     'memory_mib': p.total_memory // (1024 * 1024), 'driver': None})\n"
    "cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None\n"
    "result = {'gpus': gpus, 'torch_cuda': torch.version.cuda, 'cudnn': cudnn}"
)


def _parse_smi(out: str) -> list[dict[str, Any]]:
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < len(SMI_FIELDS):
            continue
        try:
            major, minor = (int(x) for x in parts[2].split(".")[:2])
            cc: list[int] | None = [major, minor]
        except ValueError:
            cc = None
        try:
            mem: int | None = int(float(parts[3]))
        except ValueError:
            mem = None
        gpus.append({"index": parts[0], "name": parts[1], "cc": cc, "memory_mib": mem, "driver": parts[4]})
    return gpus


def from_nvidia_smi(timeout_s: float = 10.0) -> tuple[list[dict[str, Any]] | None, str]:
    """GPUs from nvidia-smi, or (None, why not)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None, "nvidia-smi is not on PATH"
    try:
        proc = subprocess.run(
            [exe, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"nvidia-smi did not answer within {timeout_s:g} s"
    except OSError as exc:
        return None, f"nvidia-smi could not run: {exc}"
    if proc.returncode != 0:
        msg = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        return None, f"nvidia-smi failed: {msg[0] if msg else 'exit code ' + str(proc.returncode)}"
    return _parse_smi(proc.stdout), "nvidia-smi"


def from_nvml() -> tuple[list[dict[str, Any]] | None, str]:
    if importlib.util.find_spec("pynvml") is None:
        return None, "pynvml is not installed"
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            driver = driver.decode() if isinstance(driver, bytes) else driver
            gpus = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(h)
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
                mem = pynvml.nvmlDeviceGetMemoryInfo(h).total // (1024 * 1024)
                gpus.append({"index": str(i), "name": name.decode() if isinstance(name, bytes) else name,
                             "cc": [major, minor], "memory_mib": mem, "driver": driver})
            return gpus, "NVML"
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001 - NVML failing is a fact, not a crash
        return None, f"NVML failed: {type(exc).__name__}: {exc}"


def driver_present() -> bool:
    """Whether an NVIDIA kernel driver is visible at all; without one no CUDA device can exist."""
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl"))


def needs_torch_probe(smi_gpus: list[dict[str, Any]] | None, nvml_gpus: list[dict[str, Any]] | None) -> bool:
    return smi_gpus is None and nvml_gpus is None and driver_present()


def visible(gpus: list[dict[str, Any]], cvd: str | None) -> list[dict[str, Any]]:
    """Apply CUDA_VISIBLE_DEVICES (indices or GPU-/MIG- UUID prefixes are not resolved: those keep all)."""
    if cvd is None:
        return gpus
    wanted = [x.strip() for x in cvd.split(",") if x.strip()]
    if not wanted or wanted == ["-1"] or cvd.strip() == "":
        return []
    if all(w.isdigit() for w in wanted):
        by_index = {str(g["index"]): g for g in gpus}
        return [by_index[w] for w in wanted if w in by_index]
    return gpus


def torch_build() -> dict[str, Any]:
    """Torch's build facts in the diagnosed environment, read from torch/version.py as text (no torch import)."""
    from fp8doctor.system import target

    return dict(target.snapshot()["torch_build"])


def fp8_support(gpus: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per recipe family: supported on the best visible GPU, with a reason sentence."""
    ccs = [tuple(g["cc"]) for g in gpus if g.get("cc")]
    best = max(ccs) if ccs else None
    out: dict[str, dict[str, Any]] = {}
    for family in FAMILY_MIN_CC:
        if best is None:
            # Nothing visible to ask: the answer is unknown here, not "no" (a login node, CUDA_VISIBLE_DEVICES="").
            out[family] = {"supported": None, "reason": "unknown: no CUDA GPU is visible to check"}
            continue
        ok, reason = fp8_family_supported(best, family)  # type: ignore[arg-type]
        out[family] = {"supported": ok, "reason": reason}
    return out


def gpu_facts(environ: dict[str, str], torch_probe: dict[str, Any] | None = None,
              smi: tuple[list[dict[str, Any]] | None, str] | None = None,
              nvml: tuple[list[dict[str, Any]] | None, str] | None = None) -> dict[str, Any]:
    """Assemble GPU facts from whichever source answered; probes are passed in so collection stays parallel."""
    smi = smi if smi is not None else from_nvidia_smi()
    tried = [smi[1]]
    gpus, source = smi
    if gpus is None:
        nvml = nvml if nvml is not None else from_nvml()
        gpus, source = nvml
        tried.append(nvml[1])
    if gpus is None and torch_probe is not None:
        if torch_probe.get("ok"):
            gpus, source = torch_probe["result"]["gpus"], "torch (child probe)"
        else:
            tried.append(f"torch probe failed: {torch_probe.get('error')}")
    if gpus is None:
        if not driver_present():
            tried.append("no NVIDIA driver is loaded (/proc/driver/nvidia and /dev/nvidia* are absent)")
        source = "none"
        gpus = []
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    vis = visible(gpus, cvd)
    if vis:
        status = f"{len(vis)} CUDA GPU(s) visible"
    elif gpus:
        status = f"{len(gpus)} GPU(s) installed but none visible with CUDA_VISIBLE_DEVICES={cvd!r}"
    else:
        status = "no CUDA device: " + "; ".join(t for t in tried if t not in ("nvidia-smi", "NVML"))
    return {
        "source": source,
        "all": gpus,
        "visible": vis,
        "count": len(vis),
        "status": status,
        "fp8_support": fp8_support(vis),
    }
