"""CPU-only adaptation for LLaMA-Factory cells (applied in the probe and its children, never in a cell).

PyPI's torchvision and torchaudio wheels for Linux are CUDA builds: against torch 2.13.0+cpu their extensions need
libc10_cuda.so, so `import torchvision` raises RuntimeError ("operator torchvision::nms does not exist", on every
transformers model import) and `import torchaudio` raises OSError. Neither takes part in text training:
torchvision is blocked (None in sys.modules: transformers sees it as absent), torchaudio, which LLaMA-Factory's
data module imports unconditionally and uses for audio inputs only, becomes an empty module.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types


def install() -> None:
    sys.modules["torchvision"] = None  # type: ignore[assignment]
    audio = types.ModuleType("torchaudio")
    audio.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    sys.modules["torchaudio"] = audio
