"""What one Python interpreter has installed, read with the standard library only.

This file is also the probe that `fp8doctor --python PATH` runs with another interpreter: fp8doctor.system.target passes
its source to `PATH -c`, so it must import nothing outside the standard library (not even fp8doctor) and keep to
Python 3.8 (importlib.metadata; annotations are never evaluated). Nothing is imported from the packages it reads:
versions come from their metadata, torch's build from torch/version.py parsed as text.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import platform
import sys
from importlib import metadata
from typing import Any

# Distribution names as published on PyPI; the key is how facts and rules refer to them.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "transformer-engine": ("transformer-engine", "transformer_engine"),
    "transformer-engine-cu12": ("transformer-engine-cu12", "transformer_engine_cu12"),
    "transformer-engine-cu13": ("transformer-engine-cu13", "transformer_engine_cu13"),
    "transformer-engine-torch": ("transformer-engine-torch", "transformer_engine_torch"),
    "accelerate": ("accelerate",),
    "transformers": ("transformers",),
    "torchao": ("torchao",),
    "msamp": ("msamp", "ms-amp"),
    "deepspeed": ("deepspeed",),
    "flash-attn": ("flash-attn", "flash_attn"),
    "llamafactory": ("llamafactory", "llama-factory"),
    "trl": ("trl",),
    "peft": ("peft",),
    "numpy": ("numpy",),
    "pynvml": ("nvidia-ml-py", "pynvml"),
}
CUDNN_DISTRIBUTIONS = ("nvidia-cudnn-cu13", "nvidia-cudnn-cu12", "nvidia-cudnn-cu11")
# The line the probe prints; anything a sitecustomize prints around it is ignored.
MARKER = "FP8DOCTOR_INTERPRETER "


def version_of(key: str) -> str | None:
    for dist in DISTRIBUTIONS.get(key, (key,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def package_versions() -> dict[str, str | None]:
    return {key: version_of(key) for key in DISTRIBUTIONS}


def torch_build() -> dict[str, Any]:
    """Torch's build facts read from torch/version.py as text: importing torch costs ~2 s."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return {"installed": False}
    path = os.path.join(list(spec.submodule_search_locations)[0], "version.py")
    found: dict[str, Any] = {"installed": True}
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError) as exc:
        return {"installed": True, "error": f"cannot read {path}: {exc}"}
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        if target in ("__version__", "cuda", "hip", "git_version") and value is not None:
            with contextlib.suppress(ValueError):
                found[target.strip("_")] = ast.literal_eval(value)
    cudnn = None
    for dist in CUDNN_DISTRIBUTIONS:
        try:
            cudnn = f"{metadata.version(dist)} ({dist})"
            break
        except metadata.PackageNotFoundError:
            continue
    found["cudnn"] = cudnn
    return found


def snapshot() -> dict[str, Any]:
    """Everything fp8doctor needs to know about this interpreter's environment."""
    return {
        "python": platform.python_version(),
        "python_tuple": list(sys.version_info[:3]),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "system": platform.platform(),
        "packages": package_versions(),
        "torch_build": torch_build(),
        "pynvml_importable": importlib.util.find_spec("pynvml") is not None,
    }


if __name__ == "__main__":
    print(MARKER + json.dumps(snapshot(), default=str), flush=True)
