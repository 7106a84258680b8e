"""The backend's own API with no Accelerate in the training loop: torchao `convert_to_float8_training` (with
Accelerate's default filter, so native and Accelerate convert the same layers), or TE modules inside TE's
autocast. Every forward runs under bf16 torch.autocast, as Accelerate runs an FP8 model's forward (it enables
native AMP in bf16 for FP8), so the native cell and the Accelerator cell compute the same thing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from fp8doctor.runs.entries.common import (
    Context,
    compiled,
    record_eligible,
    record_fp8_layers,
    record_outside_optimizer,
    train,
)

NAMES = ("native",)
LAUNCHES_PROCESSES = False


def run(ctx: Context) -> None:
    import torch

    from fp8doctor.runs.model import build_model

    spec = ctx.spec
    t = time.perf_counter()
    model = build_model(spec.size, spec.seed)
    record_eligible(ctx, model)
    ctx.timing("model_build", time.perf_counter() - t)
    t = time.perf_counter()
    fp8_autocast: Any = contextlib.nullcontext
    if spec.backend == "torchao":
        from torchao.float8 import convert_to_float8_training

        from fp8doctor.runs.backends.torchao import accelerate_filter, ao_config

        convert_to_float8_training(model, module_filter_fn=accelerate_filter(model),
                                   config=ao_config(spec.recipe, ctx.emulate))
    elif spec.backend == "te":
        from fp8doctor.runs.backends.te import autocast_name, convert_native, te_autocast

        convert_native(model)
        ctx.note(f"Transformer Engine autocast API: transformer_engine.pytorch.{autocast_name()}")

        def fp8_autocast() -> Any:
            return te_autocast(spec.recipe)
    from fp8doctor.runs.backends.none import autocast as bf16_autocast

    @contextlib.contextmanager
    def autocast() -> Iterator[None]:
        with bf16_autocast(ctx.device), fp8_autocast():
            yield
    model.to(ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ctx.timing("prepare", time.perf_counter() - t)
    counter = record_fp8_layers(ctx, model)
    record_outside_optimizer(ctx, model, optimizer)
    model = compiled(ctx, model)
    ctx.result["accelerator"] = None

    def step(batch: dict[str, Any]) -> Any:
        with autocast():
            out = model(**batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss

    train(ctx, model, step, counter)
