"""What a test needs (markers, `requires(...)`) against what this machine has: the skip reasons, one sentence
per missing thing, from knowledge/capability's checks on gpus.facts()."""

from __future__ import annotations

from typing import Any

import pytest

from fp8doctor.pytest_plugin import gpus

MARKERS = {
    "gpu": "needs a CUDA GPU; skipped with the doctor's reason when none is usable (kwarg min_cc=(8, 9))",
    "te": "needs Transformer Engine importable on a GPU of compute capability 8.9+",
    "multigpu": "needs two or more CUDA GPUs (kwarg min_gpus=N)",
    "slow": "takes more than a few seconds",
}


def missing(gpu: bool = False, te: bool = False, min_cc: tuple[int, int] | None = None,
            min_gpus: int | None = None, torchao: bool = False) -> list[str]:
    """What this machine lacks for the requirements, one sentence each (empty: everything is there)."""
    from fp8doctor.knowledge.capability import backend_available, cc_str, fp8_family_supported

    facts = gpus.facts()
    out: list[str] = []
    cc = facts.get("cc")
    count = int(facts.get("gpu_count") or 0)
    need_gpu = gpu or te or min_cc is not None or bool(min_gpus)
    if need_gpu and count == 0:
        why = str(facts.get("gpu_status") or "nvidia-smi lists none, or CUDA_VISIBLE_DEVICES hides them")
        out.append(f"No CUDA GPU is visible ({why.removeprefix('no CUDA device: ')}).")
    if min_gpus and 0 < count < min_gpus:
        out.append(f"{min_gpus} CUDA GPUs needed, {count} visible.")
    elif min_gpus and count == 0 and min_gpus > 1:
        out.append(f"{min_gpus} CUDA GPUs needed, none visible.")
    if min_cc is not None and cc is not None and tuple(cc) < tuple(min_cc):
        out.append(f"Compute capability {cc_str(tuple(min_cc))} or higher needed; this GPU has {cc_str(tuple(cc))}.")
    if te:
        ok, why = backend_available("te", facts["installed"], facts.get("te_import_error"))
        if not ok:
            out.append(why)
        if cc is not None:
            ok, why = fp8_family_supported(cc, "per-tensor")
            if not ok and not any(why == o for o in out):
                out.append(why)
    if torchao:
        ok, why = backend_available("torchao", facts["installed"])
        if not ok:
            out.append(why)
    return out


def reason_for(**need: Any) -> str:
    """The skip reason for these requirements ('' when all are met)."""
    try:
        lacks = missing(**need)
    except Exception as exc:  # noqa: BLE001 - a broken probe must not break the session: skip and say why
        return f"fp8doctor could not read this machine's capabilities ({type(exc).__name__}: {exc})"
    return ("fp8doctor: " + " ".join(lacks)) if lacks else ""


def requires(gpu: bool = False, te: bool = False, min_cc: tuple[int, int] | None = None,
             min_gpus: int | None = None, torchao: bool = False) -> pytest.MarkDecorator:
    """A `skipif` mark whose reason lists exactly what is missing (Lightning's RunIf style)."""
    reason = reason_for(gpu=gpu, te=te, min_cc=min_cc, min_gpus=min_gpus, torchao=torchao)
    return pytest.mark.skipif(bool(reason), reason=reason or "all requirements met")


def needs(item: pytest.Item) -> dict[str, Any] | None:
    """The requirements of a test's gpu/te/multigpu markers (None: it has none)."""
    need: dict[str, Any] = {}
    gpu = item.get_closest_marker("gpu")
    if gpu is not None:
        need["gpu"] = True
        if "min_cc" in gpu.kwargs:
            cc = tuple(int(x) for x in gpu.kwargs["min_cc"])
            if len(cc) != 2:
                raise ValueError(f"min_cc must be (major, minor), got {gpu.kwargs['min_cc']!r}")
            need["min_cc"] = cc
    if item.get_closest_marker("te") is not None:
        need["te"] = True
    multi = item.get_closest_marker("multigpu")
    if multi is not None:
        need["min_gpus"] = int(multi.kwargs.get("min_gpus", 2))
    return need or None
