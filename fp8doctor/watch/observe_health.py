"""Inside the watched process, FP8 health beyond "is it on": the first forward pass of a prepared model in
evaluation mode (`model.training` False), with its FP8 module calls counted and, for Transformer Engine, whether
FP8 autocast was on during them (one check of `module.training` per top-level forward until then; the hooks are
removed after that pass); and with `watch --numerics` the per-layer FP8 numerics of fp8doctor.numerics, recorded
when the process exits."""

from __future__ import annotations

import atexit
import math
import os
from typing import Any

from fp8doctor.watch.recorder import record

NUMERICS_ENV = "FP8DOCTOR_WATCH_NUMERICS"  # the sampling interval K, set by `watch --numerics`


def watch_numerics(model: Any, acc_id: int | None, arg_index: int) -> None:
    every = os.environ.get(NUMERICS_ENV)
    if not every or not every.isdigit():
        return
    from fp8doctor.numerics import NumericsSampler

    sampler = NumericsSampler(int(every)).attach(model)

    def flush() -> None:
        layers = {name: {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
                  for name, row in sampler.to_dict().items()}
        record("numerics", accelerator=acc_id, arg_index=arg_index, every=int(every), layers=layers)

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
