"""The environment fix for a training stack that does not import (the `stack.imports` finding), as data rendered
by knowledge/fixes.py like every other fix."""

from __future__ import annotations

import shlex

from fp8doctor.knowledge.fixes import Fix

PYTORCH_INDEX = "https://download.pytorch.org/whl/"
# Compiled add-ons built against one torch build; one built for another (a CUDA torchvision next to torch+cpu)
# breaks transformers' imports (the lab's LLaMA-Factory cells).
TORCH_ADDONS = ("torchvision", "torchaudio")


def build_tag(version: str | None) -> str:
    """A wheel's build tag: `cpu` of 2.13.0+cpu, `cu128` of 2.8.0+cu128, '' for PyPI's default build."""
    return (version or "").partition("+")[2]


def broken_import_fix(package: str | None, torch_version: str | None) -> Fix:
    """The environment fix for a training stack that does not import, from the package whose code raised the
    observed error. A torch add-on (torchvision, torchaudio) is removed (transformers imports it only when it is
    installed); the commented line installs the build for the installed torch (its wheels pin that torch, and a
    local tag such as +cpu or +cu126 names the PyTorch index it came from)."""
    if package not in TORCH_ADDONS or not torch_version:
        name = package or "the package the traceback ends in"
        return Fix("environment", f"repair {name}: the training stack cannot import", "",
                   command=("python", "-c", "from transformers import Trainer"),
                   note=f"Run this in the same environment to see the whole traceback, then reinstall {name} as "
                        "the last lines of that traceback name it.")
    local = build_tag(torch_version)
    index = f" --index-url {shlex.quote(PYTORCH_INDEX + local)}" if local else ""
    return Fix("environment", f"remove {package}, which cannot load against torch {torch_version}", "",
               install=(f"pip uninstall -y {package}",
                        f"# only if your training uses {package}: install its build for this torch instead",
                        f"# pip install {package} {shlex.quote('torch==' + torch_version)}{index}"))
