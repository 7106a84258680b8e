"""Lab cells for the gated live tests: a cell's interpreter (built or reused by lab/venvs.py), assets made with it,
and the offline environment its runs get."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _lab_run() -> Any:
    if str(ROOT / "lab") not in sys.path:
        sys.path.insert(0, str(ROOT / "lab"))
    import run as lab_run

    return lab_run


def probe_env() -> dict[str, str]:
    return _lab_run().probe_env()


def cell_python(name: str) -> Path:
    """The interpreter of lab cell `name`, built from its pins when it is not cached yet."""
    lab_run = _lab_run()
    from venvs import ensure_cell

    [spec] = [c for c in lab_run.load_cells() if c["name"] == name]
    return Path(ensure_cell(spec))


def cell_with_assets(name: str, assets: str, root: Path) -> dict[str, Any]:
    """The cell, and `assets` (a script given `root`) run with its interpreter: {python, bin, root}."""
    python = cell_python(name)
    subprocess.run([str(python), "-c", assets, str(root)], check=True, cwd=ROOT, capture_output=True,
                   env=probe_env(), timeout=600)
    return {"python": str(python), "bin": str(python.parent), "root": root}


def offline_env(cell: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
    """This environment without FP8/HF/Python settings, offline, CPU only, the cell's bin first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_", "HF_", "PYTHON"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="",
               PATH=os.pathsep.join([cell["bin"], env.get("PATH", "")]), **extra)
    return env
