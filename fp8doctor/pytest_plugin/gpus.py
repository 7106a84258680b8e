"""The GPU facts the plugin reads (nvidia-smi via runs.machine, read once and cached) and which GPU an xdist
worker gets. Imports only the stdlib at load time."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any

ALL_DEVICES_ENV = "FP8DOCTOR_ALL_CUDA_DEVICES"  # what CUDA_VISIBLE_DEVICES a worker saw before it was pinned


@functools.lru_cache(maxsize=1)
def facts() -> dict[str, Any]:
    from fp8doctor.runs.machine import snapshot

    return snapshot()


def visible_devices(environ: Mapping[str, str], gpus: list[dict[str, Any]]) -> list[str]:
    """The GPUs CUDA shows this process, as CUDA_VISIBLE_DEVICES entries: the user's own list when one is set
    (indices or UUIDs, kept as written), else the index of each GPU nvidia-smi lists."""
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip():
        return [x.strip() for x in cvd.split(",") if x.strip()]
    return [str(g["index"]) for g in gpus]


def assign_gpu(worker_id: str | None, devices: list[str]) -> str | None:
    """The one GPU an xdist worker gets: gw0 -> first device, gw1 -> second, ...; workers beyond the number of
    GPUs share them round-robin. None outside xdist (worker_id None) or without GPUs."""
    match = re.fullmatch(r"gw(\d+)", worker_id or "")
    if not devices or match is None:
        return None
    return devices[int(match.group(1)) % len(devices)]


def gpu_label(devices: list[str], gpus: list[dict[str, Any]]) -> str:
    """How a report names the GPU(s) a test ran on: "GPU 3 (NVIDIA H200)", or "GPUs 0,1" for several."""
    if len(devices) != 1:
        return f"GPUs {','.join(devices)}" if devices else "no GPU"
    names = {str(g.get("index")): g.get("name") for g in gpus}
    name = names.get(devices[0])
    return f"GPU {devices[0]}" + (f" ({name})" if name else "")


def worker_gpu() -> str | None:
    """The GPU an xdist worker should use (gw0 -> first visible GPU, gw1 -> second, ...; outside xdist the first);
    None without GPUs."""
    try:
        devices = visible_devices(os.environ, facts().get("gpus") or [])
    except Exception:  # noqa: BLE001
        return None
    return assign_gpu(os.environ.get("PYTEST_XDIST_WORKER", "gw0"), devices)


def no_gpu() -> bool:
    try:
        return not int(facts().get("gpu_count") or 0)
    except Exception:  # noqa: BLE001 - a machine whose GPUs cannot be read has none usable here
        return True
