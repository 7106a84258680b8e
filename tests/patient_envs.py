"""Real virtual environments of other library generations ("patients"), built once per test session.

A patient venv shares the test interpreter's torch through a `.pth` file (seconds, no multi-GB download) and gets
its own accelerate/transformers from PyPI, which shadow the shared ones. The shared folder is a view of the
site-packages that holds torch, made of symlinks, without fp8doctor: a patient must not see the doctor unless a
test installs it there. A constraints file pins torch, so pip never pulls a CUDA build.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from session_cache import computed_once, shared_root

REPO = Path(__file__).resolve().parents[1]
OLD_GENERATION = ["accelerate==1.1.1", "transformers==4.45.0"]  # the reference report's versions
OTHER_GENERATION = ["accelerate==1.3.0", "transformers==4.45.0"]
BUILD_TIMEOUT_S = 600


def _torch_site() -> Path:
    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.submodule_search_locations, "the test interpreter needs torch"
    return Path(list(spec.submodule_search_locations)[0]).parent


def torch_version() -> str:
    from importlib import metadata

    return metadata.version("torch")


def _shared_view(root: Path) -> Path:
    """Symlinks to every entry of torch's site-packages except fp8doctor's own files and .pth files."""
    view = root / "torch-base-view"
    if view.exists():
        return view
    tmp = root / f"torch-base-view.tmp{os.getpid()}"
    tmp.mkdir()
    for entry in _torch_site().iterdir():
        name = entry.name.lower()
        if name.startswith(("fp8doctor", "__editable__")) or name.endswith((".pth", ".egg-link")):
            continue
        (tmp / entry.name).symlink_to(entry)
    try:
        tmp.rename(view)
    except OSError:  # another xdist worker made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return view


def pip(python: str | Path, *args: str, timeout: float = BUILD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


def freeze(python: str | Path) -> list[str]:
    """`pip freeze --all` of that interpreter: every distribution it can import, shared ones included."""
    p = pip(python, "freeze", "--all", timeout=120)
    assert p.returncode == 0, p.stderr
    return sorted(line for line in p.stdout.splitlines() if line.strip())


def build_venv(root: Path, name: str, requirements: list[str], base_python: str = sys.executable) -> Path:
    """A venv at root/name sharing torch, with `requirements` installed; returns its python."""
    folder = root / name
    python = folder / "bin" / "python"
    subprocess.run([base_python, "-m", "venv", str(folder)], check=True, timeout=120)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_fp8doctor_test_torch_base.pth").write_text(str(_shared_view(root)) + "\n")
    constraints = root / f"{name}-constraints.txt"
    constraints.write_text(f"torch=={torch_version()}\n")
    if requirements:
        p = pip(python, "install", "-q", "-c", str(constraints), *requirements)
        assert p.returncode == 0, f"pip install {requirements} failed: {p.stderr[-2000:]}"
    return python


def session_venv(tmp_path_factory: pytest.TempPathFactory, name: str, requirements: list[str]) -> Path:
    """build_venv once per session (shared by xdist workers)."""
    root = shared_root(tmp_path_factory)
    return Path(computed_once(tmp_path_factory, f"venv-{name}",
                              lambda: str(build_venv(root, name, requirements))))


def find_python310() -> str | None:
    """A runnable Python 3.10: FP8DOCTOR_TEST_PYTHON310, `python3.10` on PATH, or pyenv's, else None."""
    candidates = [os.environ.get("FP8DOCTOR_TEST_PYTHON310"), "python3.10"]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(str(p) for p in pyenv_root.glob("versions/3.10*/bin/python3.10"))
    for cand in candidates:
        if not cand:
            continue
        try:
            p = subprocess.run([cand, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                               capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if p.returncode == 0 and p.stdout.strip() == "True":
            return cand
    return None
