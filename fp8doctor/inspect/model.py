"""The user's model from its config alone: read config.json safely, build the model on the meta device (no weights,
no download, no remote code), and list its Linear layers. Imports torch and transformers lazily."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.knowledge.shapes import Layer
from fp8doctor.system import safeio
from fp8doctor.system.errors import UsageError

CONFIG_CAP = 4 << 20  # a config.json is a few KB; a bigger file is not one
MAX_LAYERS = 1024  # num_hidden_layers above this is not a model fp8doctor inspects (and would take minutes on meta)


@dataclass
class ModelFacts:
    path: str
    model_type: str
    architecture: str
    parameters: int
    layers: list[Layer]
    hidden_layers: int
    attention_width: int  # heads x head dim: the width of the score and context matmuls
    notes: list[str] = field(default_factory=list)


def config_path(path: str) -> str:
    """A model folder's config.json, or the file itself."""
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    safeio.check_regular(path, "--model (a model folder or its config.json)")
    return path


def read_config(path: str) -> dict[str, Any]:
    raw = safeio.read_capped(path, CONFIG_CAP, "a model config")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: not a JSON model config ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise UsageError(f"{path}: not a Hugging Face model config (no \"model_type\" string at the top level)")
    layers = data.get("num_hidden_layers", 0)
    if not isinstance(layers, int) or isinstance(layers, bool) or not 0 <= layers <= MAX_LAYERS:
        raise UsageError(f"{path}: num_hidden_layers {layers!r} is not an integer from 0 to {MAX_LAYERS}")
    return data


def _build(data: dict[str, Any], path: str) -> tuple[Any, str]:
    import torch
    import transformers

    try:
        config = transformers.AutoConfig.for_model(data["model_type"], **{k: v for k, v in data.items()
                                                                           if k != "model_type"})
    except Exception as exc:  # noqa: BLE001 - any refusal of the config is the user's input, not our bug
        raise UsageError(f"{path}: transformers {transformers.__version__} cannot read this config "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    names = [a for a in (data.get("architectures") or []) if isinstance(a, str)]
    classes = [getattr(transformers, a) for a in names if a.isidentifier() and hasattr(transformers, a)]
    builders = [*classes, transformers.AutoModelForCausalLM, transformers.AutoModel]
    last: Exception | None = None
    for builder in builders:
        try:
            with torch.device("meta"):
                model = builder.from_config(config) if builder.__name__.startswith("Auto") else builder(config)
            return model, type(model).__name__
        except Exception as exc:  # noqa: BLE001 - try the next class; the last failure is reported
            last = exc
    raise UsageError(f"{path}: transformers {transformers.__version__} cannot build a model from this config "
                     f"({type(last).__name__}: {str(last).splitlines()[0] if str(last) else ''})")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The libraries' import-time log lines and warnings (torchao's missing CUDA kernels, torch's pytree notes) say
    nothing about the user's model: hidden while the model is built."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Importing torch + transformers creates millions of long-lived objects; the cyclic collector walking them
    during the imports and again at exit was ~1.3 of ~5.4 s of `inspect` on a 7B config (benchmarks/inspect_speed.py).
    In a process that had not imported torch yet (the `inspect` command), they are frozen afterwards: left out of
    every later collection, which still runs for what is created next. A process that already had torch (tests, a
    caller) keeps its collector as it was."""
    fresh = "torch" not in sys.modules
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if fresh:
            gc.freeze()
        if enabled:
            gc.enable()


def load(path: str) -> ModelFacts:
    """Read the config at `path` (a folder or config.json) and build its model on the meta device."""
    cfg_path = config_path(path)
    data = read_config(cfg_path)
    with _quiet(), _no_cycle_collection():
        import torch

        model, architecture = _build(data, cfg_path)
    layers = [Layer(name, m.in_features, m.out_features) for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear)]
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(text, "num_attention_heads", 0) or 0
    head_dim = getattr(text, "head_dim", None) or ((getattr(text, "hidden_size", 0) or 0) // heads if heads else 0)
    notes = []
    if getattr(text, "tie_word_embeddings", False):
        notes.append("lm_head shares its weight with the input embedding (tie_word_embeddings)")
    return ModelFacts(path=cfg_path, model_type=data["model_type"], architecture=architecture,
                      parameters=sum(p.numel() for p in model.parameters()), layers=layers,
                      hidden_layers=getattr(text, "num_hidden_layers", 0) or 0,
                      attention_width=heads * head_dim, notes=notes)
