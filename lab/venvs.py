"""One virtual environment per lab cell, all sharing a single torch-only base environment.

The base holds torch==2.13.0 and its own dependencies, nothing else, so a cell that lists no torchao really has
none. A cell is a `--without-pip` venv whose site-packages carries a `.pth` line naming the base's site-packages;
the cell's pins are installed by this interpreter's pip (`pip --python`) under a constraints file that pins torch,
so pip never replaces the shared CPU build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

TORCH_PIN = "torch==2.13.0"
PY_TAG = f"python{sys.version_info.major}.{sys.version_info.minor}"
ERROR_LINES = 6


class Unresolvable(Exception):
    """pip could not install the cell's pins together; `lines` are pip's last error lines."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def cache_dir() -> Path:
    return Path(os.environ.get("FP8DOCTOR_LAB_CACHE") or Path.home() / ".cache" / "fp8doctor-lab")


def _python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _site_packages(env_dir: Path) -> Path:
    return env_dir / "lib" / PY_TAG / "site-packages"


def _constraints() -> Path:
    path = cache_dir() / "constraints.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != TORCH_PIN + "\n":
        path.write_text(TORCH_PIN + "\n")
    return path


def _pip(target: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "--python", str(target), "install", "--disable-pip-version-check",
           "--no-input", "-q", "-c", str(_constraints()), *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def _last_error_lines(output: str) -> list[str]:
    lines = [ln.rstrip() for ln in output.splitlines() if ln.strip() and "WARNING: Location" not in ln]
    return lines[-ERROR_LINES:]


def ensure_base() -> Path:
    """The torch-only base environment's site-packages (created once)."""
    base = cache_dir() / "base-torch-2.13.0"
    marker = base / ".complete"
    if not marker.exists():
        venv.EnvBuilder(clear=True, with_pip=False, symlinks=True).create(base)
        proc = _pip(_python(base), [TORCH_PIN])
        if proc.returncode != 0:
            raise RuntimeError("cannot build the torch base: " + " | ".join(_last_error_lines(proc.stderr)))
        marker.write_text(TORCH_PIN + "\n")
    return _site_packages(base)


def cell_dir(cell: dict) -> Path:
    digest = hashlib.sha256(json.dumps(sorted(cell.get("pip", []))).encode()).hexdigest()[:10]
    return cache_dir() / "cells" / f"{cell['name']}-{digest}"


def ensure_cell(cell: dict) -> Path:
    """The cell's python, building the cell if needed. Raises Unresolvable when pip cannot install its pins."""
    base_site = ensure_base()
    env_dir = cell_dir(cell)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(env_dir.with_name(env_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builders never build the same cell at once
        return _ensure_cell_locked(cell, env_dir, base_site)


def _ensure_cell_locked(cell: dict, env_dir: Path, base_site: Path) -> Path:
    marker = env_dir / ".cell.json"
    if marker.exists() and not (_site_packages(env_dir) / "_lab_base.pth").exists():
        marker.unlink()  # a build that was interrupted or raced: rebuild it
    if marker.exists():
        record = json.loads(marker.read_text())
        if record.get("unresolvable"):
            raise Unresolvable(record["unresolvable"])
        return _python(env_dir)
    venv.EnvBuilder(clear=True, with_pip=False, symlinks=True).create(env_dir)
    (_site_packages(env_dir) / "_lab_base.pth").write_text(f"{base_site}\n")
    proc = _pip(_python(env_dir), list(cell.get("pip", [])))
    if proc.returncode != 0:
        lines = _last_error_lines(proc.stderr or proc.stdout)
        marker.write_text(json.dumps({"unresolvable": lines}))
        raise Unresolvable(lines)
    marker.write_text(json.dumps({"pip": cell.get("pip", [])}))
    return _python(env_dir)
