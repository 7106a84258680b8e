"""What every entry path shares: the run context, the training loop, and the observations it records."""

from __future__ import annotations

import math
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.runs.spec import SHARDED_ENTRIES, RunSpec

_LIBRARY_MARKERS = ("/accelerate/", "/transformers/", "/torchao/", "/transformer_engine/")


@dataclass
class Context:
    spec: RunSpec
    device: str
    result: dict[str, Any]
    emulate: bool = False
    t0: float = field(default_factory=time.perf_counter)
    sampler: Any = None  # fp8doctor.numerics.NumericsSampler when spec.numerics_every

    def note(self, sentence: str) -> None:
        notes = self.result.setdefault("notes", [])
        if sentence not in notes:
            notes.append(sentence)

    def timing(self, name: str, seconds: float) -> None:
        self.result.setdefault("timings_s", {})[name] = round(seconds, 4)


def resolve_device(spec: RunSpec) -> str:
    if spec.device:
        return spec.device
    import torch

    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return f"cuda:{local % torch.cuda.device_count()}"
    return "cpu"


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """type, message, where (innermost accelerate/transformers/torchao/TE frame) and user_where (innermost frame
    outside site-packages and the standard library: the code that called into the library)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = user_where = None
    for fr in reversed(frames):
        path = fr.filename.replace("\\", "/")
        in_packages = "site-packages/" in path or "dist-packages/" in path
        if where is None and in_packages and any(m in path for m in _LIBRARY_MARKERS):
            where = f"{_short(path)}:{fr.lineno} in {fr.name}"
        if user_where is None and not in_packages and not path.startswith(sys.base_prefix):
            user_where = f"{_short(path)}:{fr.lineno} in {fr.name}"
    if where is None and frames:
        fr = frames[-1]
        where = f"{_short(fr.filename)}:{fr.lineno} in {fr.name}"
    tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    return {"type": type(exc).__name__, "message": str(exc), "where": where, "user_where": user_where,
            "traceback_tail": tail[-3000:]}


def _short(path: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    cwd = os.getcwd() + "/"
    return path[len(cwd):] if path.startswith(cwd) else path


def accelerator_facts(acc: Any) -> dict[str, Any]:
    backend = getattr(acc, "fp8_backend", None)
    return {
        "mixed_precision": acc.mixed_precision,
        "fp8_enabled": bool(getattr(acc, "fp8_enabled", False)),
        "fp8_backend": getattr(backend, "value", None if backend is None else str(backend)),
        "distributed_type": str(getattr(acc.distributed_type, "value", acc.distributed_type)),
        "num_processes": acc.num_processes,
    }


def record_eligible(ctx: Context, model: Any) -> None:
    """Eligible Linear layers under the backend's filter, computed on the model before any conversion."""
    from fp8doctor.observe import eligible_linear_names
    from fp8doctor.runs.backends import eligibility_rule

    ctx.result["eligible_layers"] = eligible_linear_names(model, eligibility_rule(ctx.spec.backend))
    ctx.result["eligibility_rule"] = eligibility_rule(ctx.spec.backend)


def record_fp8_layers(ctx: Context, model: Any) -> Any:
    """FP8 layers after preparation; attaches and returns the forward counter."""
    from fp8doctor.observe import FP8ForwardCounter, fp8_layer_names
    from fp8doctor.runs.backends.torchao import model_emulated

    inner = unwrap(model)
    ctx.result["fp8_layers"] = fp8_layer_names(inner)
    emulated = model_emulated(inner)
    if emulated is not None:
        ctx.result["emulated"] = emulated
        if emulated:
            ctx.note("torchao emulate=True: real FP8 casts and scales, matmul in high precision (CPU)")
    if ctx.spec.numerics_every and ctx.spec.backend != "none" and ctx.sampler is None:
        if ctx.spec.compile:
            ctx.note("numerics not sampled: the sampler's hooks would be traced by torch.compile")
        else:
            from fp8doctor.numerics import NumericsSampler

            ctx.sampler = NumericsSampler(ctx.spec.numerics_every).attach(inner)
    return FP8ForwardCounter().attach(inner)


def record_outside_optimizer(ctx: Context, model: Any, optimizer: Any) -> None:
    """The trainable parameters of the (prepared) model the optimizer does not hold: they never train. Not for
    DeepSpeed (observe.DEEPSPEED_COPIES)."""
    if ctx.spec.entry == "deepspeed":
        return
    from fp8doctor.observe import params_outside_optimizer

    ctx.result["outside_optimizer"] = params_outside_optimizer(unwrap(model), optimizer)


def record_grad_norm(ctx: Context, value: Any) -> None:
    ctx.result.setdefault("grad_norms", []).append(value)


def _grad_norm_hook(ctx: Context) -> Any:
    """Every optimizer step of this run records the gradient norm it is about to apply (registered globally, so
    the optimizer inside Accelerate's wrapper is reached too); returns the handle to remove."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from fp8doctor.numerics import grad_norm

    def hook(optimizer: Any, _args: Any, _kwargs: Any) -> None:
        record_grad_norm(ctx, grad_norm(p for g in optimizer.param_groups for p in g["params"]))

    return register_optimizer_step_pre_hook(hook)


def unwrap(model: Any) -> Any:
    """The model inside DDP-style wrappers (they keep it as `.module`)."""
    inner = getattr(model, "module", None)
    while inner is not None and inner is not model:
        model, inner = inner, getattr(inner, "module", None)
    return model


def loss_value(loss: Any) -> float | str:
    v = float(loss.detach().float().item())
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def train(ctx: Context, model: Any, step: Any, counter: Any) -> None:
    """Run `step(batch) -> loss` over the spec's synthetic batches, recording losses, times, tokens/s, memory."""
    from fp8doctor.runs.model import synthetic_batches

    spec = ctx.spec
    losses: list[Any] = []
    times: list[float] = []
    tokens = 0
    ctx.result["losses"] = losses
    ctx.result["step_times_s"] = times
    t_steps = time.perf_counter()
    ctx.result["grad_norms"] = []
    hook = _grad_norm_hook(ctx)
    try:
        for batch in synthetic_batches(spec.size, spec.seed, spec.steps):
            batch = {k: v.to(ctx.device) for k, v in batch.items()}
            tokens = batch["input_ids"].numel()
            t = time.perf_counter()
            loss = step(batch)
            losses.append(loss_value(loss))
            _sync(ctx.device)
            times.append(round(time.perf_counter() - t, 5))
    finally:
        hook.remove()
    ctx.timing("steps", time.perf_counter() - t_steps)
    finish(ctx, counter, tokens)


def finish(ctx: Context, counter: Any, tokens_per_step: int) -> None:
    """What every training entry records once its steps ran: throughput, FP8 forward evidence, peak memory."""
    from fp8doctor.observe import fp8_active

    times = ctx.result.get("step_times_s") or []
    later = times[1:] or times
    ctx.result["tokens_per_s"] = round(tokens_per_step * len(later) / sum(later), 1) if sum(later) > 0 else None
    counter.detach()
    if ctx.sampler is not None:
        from fp8doctor.numerics import finite_rows

        ctx.sampler.detach()
        ctx.result["numerics"] = {"every": ctx.sampler.every, "layers": finite_rows(ctx.sampler.to_dict()),
                                  "unsampled": ctx.sampler.unsampled}
    ctx.result["forwards"] = counter.to_dict()
    ctx.result["fp8_active"] = fp8_active(len(ctx.result.get("fp8_layers") or []), ctx.result["forwards"])
    ctx.result["peak_mem_bytes"] = peak_memory(ctx.device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def peak_memory(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def compile_backend(device: str) -> str:
    """inductor on GPUs; aot_eager on CPU (dynamo and AOTAutograd trace the FP8 model and its backward, where
    FP8 + torch.compile failures are raised, without generating C++ kernels on a small CPU box)."""
    return "inductor" if device.startswith("cuda") else "aot_eager"


def compiled(ctx: Context, model: Any) -> Any:
    """torch.compile(model) when spec.compile (after preparation, so hooks and wrappers are traced too)."""
    if not ctx.spec.compile:
        return model
    import torch

    backend = compile_backend(ctx.device)
    ctx.result["compiled"] = {"backend": backend}
    return torch.compile(model, backend=backend)


def accelerate_training(ctx: Context, make_accelerator: Any) -> None:
    """Build the model, create the Accelerator the entry's way, prepare model+optimizer together, train."""
    import torch

    from fp8doctor.runs.model import build_model

    t = time.perf_counter()
    model = build_model(ctx.spec.size, ctx.spec.seed)
    record_eligible(ctx, model)
    ctx.timing("model_build", time.perf_counter() - t)
    t = time.perf_counter()
    accelerator = make_accelerator()
    ctx.result["accelerator"] = accelerator_facts(accelerator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    ctx.timing("prepare", time.perf_counter() - t)
    counter = record_fp8_layers(ctx, model)
    record_outside_optimizer(ctx, model, optimizer)
    if ctx.spec.entry in SHARDED_ENTRIES:
        from fp8doctor.observe import sharding

        ctx.result.setdefault("wrapper", {}).update(sharding(model))
    model = compiled(ctx, model)
    ctx.device = str(accelerator.device)

    def step(batch: dict[str, Any]) -> Any:
        out = model(**batch)
        accelerator.backward(out.loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss

    train(ctx, model, step, counter)
    if ctx.spec.backend != "none":
        from fp8doctor.runs.entries.checkpoint import round_trip

        ctx.result["checkpoint"] = round_trip(ctx.spec, unwrap(getattr(model, "_orig_mod", model)))
