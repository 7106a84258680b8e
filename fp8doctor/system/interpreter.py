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
    "torchvision": ("torchvision",),
    "torchaudio": ("torchaudio",),
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
    "axolotl": ("axolotl",),
    "peft": ("peft",),
    "numpy": ("numpy",),
    "pynvml": ("nvidia-ml-py", "pynvml"),
}
CUDNN_DISTRIBUTIONS = ("nvidia-cudnn-cu13", "nvidia-cudnn-cu12", "nvidia-cudnn-cu11")
# Frameworks that build the HF Trainer's Accelerator for the user: where a patch of Accelerator.__init__ (the
# reference report's injected FP8 recipe) would sit in the user's stack. Key: the facts' name; value: its module.
TRAINER_WRAPPERS = {"llamafactory": "llamafactory", "axolotl": "axolotl", "trl": "trl"}
PATCH_NEEDLE = "Accelerator.__init__"
SCAN_MAX_FILES = 5000
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


def _patch_lines(source: str) -> list[int]:
    """Lines that assign `<...>Accelerator.__init__ = ...` (a monkey-patch of Accelerate's constructor)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        for t in targets:
            owner = t.value if isinstance(t, ast.Attribute) and t.attr == "__init__" else None
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if name.endswith("Accelerator"):
                lines.append(node.lineno)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr"
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "__init__"
                and "Accelerator" in ast.dump(node.args[0])):
            lines.append(node.lineno)
    return sorted(lines)


def accelerator_patches() -> dict[str, Any]:
    """Each installed trainer framework's sources read (not imported) for a patch of Accelerator.__init__:
    {name: {"version", "files_read", "patches": ["pkg/path.py:LINE", ...]}} or {name: None} when not installed."""
    out: dict[str, Any] = {}
    for key, module in TRAINER_WRAPPERS.items():
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        roots = list(spec.submodule_search_locations or []) if spec is not None else []
        if not roots:
            out[key] = None
            continue
        found, read = [], 0
        for root in roots:
            base = os.path.dirname(root)
            for folder, dirs, files in os.walk(root):
                dirs.sort()
                for name in sorted(files):
                    if not name.endswith(".py") or read >= SCAN_MAX_FILES:
                        continue
                    path = os.path.join(folder, name)
                    read += 1
                    try:
                        with open(path, encoding="utf-8", errors="replace") as fh:
                            text = fh.read()
                    except OSError:
                        continue
                    if PATCH_NEEDLE in text or ("setattr" in text and "Accelerator" in text):
                        rel = os.path.relpath(path, base).replace(os.sep, "/")
                        found += [f"{rel}:{line}" for line in _patch_lines(text)]
        out[key] = {"version": version_of(key), "files_read": read, "patches": found}
    return out


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
        "accelerator_patches": accelerator_patches(),
    }


if __name__ == "__main__":
    print(MARKER + json.dumps(snapshot(), default=str), flush=True)
