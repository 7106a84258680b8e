"""pytest plugin (installed with fp8doctor): FP8 markers whose skip reasons come from the doctor's checks."""

from __future__ import annotations

MARKERS = {
    "gpu": "needs a CUDA GPU; skipped with the doctor's reason when none is usable",
    "te": "needs Transformer Engine importable on a GPU of compute capability 8.9+",
    "multigpu": "needs two or more CUDA GPUs",
    "slow": "takes more than a few seconds",
}


def pytest_configure(config) -> None:  # type: ignore[no-untyped-def]
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
