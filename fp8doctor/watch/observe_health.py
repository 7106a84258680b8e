"""Inside the watched process, FP8 health beyond "is it on": the first forward pass of a prepared model in
evaluation mode (`model.training` False), with its FP8 module calls counted and, for Transformer Engine, whether
FP8 autocast was on during them (one check of `module.training` per top-level forward until then; the hooks are
removed after that pass); and with `watch --numerics` the per-layer FP8 numerics of fp8doctor.numerics, recorded
when the process exits."""

from __future__ import annotations

import atexit
import os
from typing import Any

from fp8doctor.watch.recorder import record

NUMERICS_ENV = "FP8DOCTOR_WATCH_NUMERICS"  # the sampling interval K, set by `watch --numerics`
GRAD_NORMS_ENV = "FP8DOCTOR_WATCH_GRAD_NORMS"  # "1": record the gradient norm after each backward (`--numerics`,
# `--baseline`)
MAX_GRAD_NORMS = 1000
_GRAD_NORMS = {"n": 0}


def after_backward(accelerator: Any) -> None:
    """With GRAD_NORMS_ENV: the L2 norm of the gradients of the models this Accelerator prepared, recorded after
    each `accelerator.backward` (before any clipping; accumulated over micro-batches as the gradients are)."""
    if os.environ.get(GRAD_NORMS_ENV) != "1" or _GRAD_NORMS["n"] >= MAX_GRAD_NORMS:
        return
    _GRAD_NORMS["n"] += 1
    try:
        from fp8doctor.numerics import grad_norm

        params = [p for m in getattr(accelerator, "_models", None) or [] for p in m.parameters()]
        record("grad_norm", source="accelerator.backward", value=grad_norm(params))
    except Exception as exc:  # noqa: BLE001 - a norm that cannot be taken is recorded, never raised
        record("observer_error", where="grad_norm", error=f"{type(exc).__name__}: {exc}")


def watch_numerics(model: Any, acc_id: int | None, arg_index: int) -> None:
    every = os.environ.get(NUMERICS_ENV)
    if not every or not every.isdigit():
        return
    from fp8doctor.numerics import NumericsSampler

    sampler = NumericsSampler(int(every)).attach(model)

    def flush() -> None:
        from fp8doctor.numerics import finite_rows

        record("numerics", accelerator=acc_id, arg_index=arg_index, every=int(every),
               layers=finite_rows(sampler.to_dict()), unsampled=sampler.unsampled)

    atexit.register(flush)


def watch_eval(model: Any, acc_id: int | None, arg_index: int) -> None:
    from fp8doctor.observe import FP8ForwardCounter

    state: dict[str, Any] = {"counter": None}
    handles: list[Any] = []

    def before(module: Any, _inputs: Any) -> None:
        if state["counter"] is None and not module.training:
            state["counter"] = FP8ForwardCounter().attach(module)

    def after(_module: Any, _inputs: Any, _output: Any) -> None:
        counter = state["counter"]
        if counter is None:
            return
        counter.detach()
        for h in handles:
            h.remove()
        try:
            import torch

            grad = torch.is_grad_enabled()
        except Exception:  # noqa: BLE001 - only a detail of the record
            grad = None
        record("eval_forward", accelerator=acc_id, arg_index=arg_index, counter=counter.to_dict(), grad_enabled=grad)

    handles.append(model.register_forward_pre_hook(before))
    handles.append(model.register_forward_hook(after))
