"""Inside the watched process: the first forward pass of a prepared model in evaluation mode (`model.training`
False), with its FP8 module calls counted and, for Transformer Engine, whether FP8 autocast was on during them.
One check of `module.training` per top-level forward until then; the hooks are removed after that pass."""

from __future__ import annotations

from typing import Any

from fp8doctor.watch.recorder import record


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
