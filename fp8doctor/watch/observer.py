"""The observer `fp8doctor watch` injects into every Python process of the watched command.

Loaded by the injected `sitecustomize` when FP8DOCTOR_WATCH_DIR is set. At start it imports only the standard
library: it installs an import hook that wraps `accelerate.Accelerator` (and transformers' `TrainingArguments` and
`Trainer.log`) when, and only if, the process imports them. The wrappers call the original unchanged, with the
same arguments, and only read state, so the computation is the same with and without `watch`. Each observation is
one JSON line appended (and flushed) to this process's own file, so a crash keeps what was seen.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.abc
import inspect
import os
import sys
import threading
from typing import Any

from fp8doctor.watch import recorder
from fp8doctor.watch.observe_health import after_backward, watch_eval, watch_numerics
from fp8doctor.watch.observe_transformers import current_trainer_args, patch_transformers
from fp8doctor.watch.recorder import STATE, WATCH_DIR_ENV, callers, env_now, num, plain, record, versions

FP8_HANDLER_CLASSES = ("TERecipeKwargs", "AORecipeKwargs", "MSAMPRecipeKwargs", "FP8RecipeKwargs")
FORWARDS_TO_WATCH = 3  # top-level forward passes after prepare() whose FP8 module calls are counted
MAX_LOSSES = 1000

_TARGETS = ("accelerate.accelerator", "transformers.training_args", "transformers.trainer")


# ---- Accelerate ------------------------------------------------------------------------------------------------


def _handler_names(handlers: Any) -> list[str]:
    try:
        return [type(h).__name__ for h in (handlers or [])]
    except TypeError:
        return [type(handlers).__name__]


def _accelerator_result(acc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("mixed_precision", "fp8_enabled", "fp8_backend", "distributed_type", "num_processes",
                 "process_index", "local_process_index", "device"):
        if not hasattr(type(acc), name) and name not in vars(acc):
            out[name] = None  # not in this Accelerate release (accelerate <= 1.3 has no fp8_enabled/fp8_backend)
            continue
        try:
            out[name] = plain(getattr(acc, name))
        except Exception as exc:  # noqa: BLE001 - a property that raises is itself a fact
            out[name] = f"<{type(exc).__name__}>"
    if out["fp8_enabled"] is None and isinstance(out.get("mixed_precision"), str):
        # What accelerate >= 1.4 stores as fp8_enabled: the resolved mixed precision is fp8.
        out["fp8_enabled"] = out["mixed_precision"] == "fp8"
    return out


def _wrap_accelerator_init(original: Any) -> Any:
    try:
        signature = inspect.signature(original)
    except (TypeError, ValueError):
        signature = None

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        acc_id = STATE["next_id"]
        STATE["next_id"] += 1
        fields: dict[str, Any] = {"id": acc_id}
        try:
            bound = signature.bind_partial(self, *args, **kwargs).arguments if signature else kwargs
            fields["arg_mixed_precision"] = plain(bound.get("mixed_precision"))
            fields["handlers"] = _handler_names(bound.get("kwargs_handlers"))
            fields["fp8_handlers"] = [h for h in fields["handlers"] if h in FP8_HANDLER_CLASSES]
            fields["env"] = env_now()
            fields["trainer_args"] = current_trainer_args()
            fields["callers"] = callers(("accelerate/accelerator.py",))
            state_cls = sys.modules.get("accelerate.state")
            shared = getattr(getattr(state_cls, "AcceleratorState", None), "_shared_state", None)
            fields["state_existed"] = bool(shared)
        except Exception as exc:  # noqa: BLE001
            fields["observer_error"] = f"{type(exc).__name__}: {exc}"
        try:
            original(self, *args, **kwargs)
        except BaseException as exc:
            fields["error"] = {"type": type(exc).__name__, "message": str(exc)}
            record("accelerator", **fields)
            raise
        STATE["accelerators"][id(self)] = acc_id
        fields["result"] = _accelerator_result(self)
        with contextlib.suppress(Exception):
            from fp8doctor.observe import ao_config_facts

            handler = getattr(self, "ao_recipe_handler", None)
            fields["ao_config"] = ao_config_facts(handler, id(handler) in STATE["ao_user_configs"])
        record("accelerator", **fields)
        _record_device(self)

    return __init__


def _record_device(acc: Any) -> None:
    """Once per process: the accelerator device this rank trains on and its compute capability (GPU: "9.0")."""
    if STATE.get("device_recorded"):
        return
    STATE["device_recorded"] = True
    try:
        import torch

        device = acc.device
        info: dict[str, Any] = {"device": str(device), "type": device.type}
        if device.type == "cuda":
            major, minor = torch.cuda.get_device_capability(device)
            info.update(name=torch.cuda.get_device_name(device), capability=f"{major}.{minor}")
        record("device", **info)
    except Exception as exc:  # noqa: BLE001
        record("observer_error", where="device", error=f"{type(exc).__name__}: {exc}")


def _eligible_rule(acc: Any) -> str:
    backend = ""
    with contextlib.suppress(Exception):
        backend = str(plain(acc.fp8_backend)).upper()
    if backend not in ("TE", "AO"):
        backend = os.environ.get("ACCELERATE_FP8_BACKEND", "AO").upper()
    return "accelerate-te" if backend == "TE" else "accelerate-ao"


def _unwrap(model: Any) -> Any:
    while hasattr(model, "module") and type(model).__name__ in ("DistributedDataParallel", "DataParallel",
                                                                 "DeepSpeedEngine"):
        model = model.module
    return model


def _wrap_prepare(original: Any) -> Any:
    @functools.wraps(original)
    def prepare(self: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        from fp8doctor import observe

        acc_id = STATE["accelerators"].get(id(self))
        models: list[dict[str, Any]] = []
        try:
            rule = _eligible_rule(self)
            for index, arg in enumerate(args):
                if isinstance(arg, torch.nn.Module):
                    models.append({
                        "arg_index": index,
                        "class": type(arg).__name__,
                        "rule": rule,
                        "eligible": observe.eligible_linear_names(arg, rule),
                        "linear_before": len(observe.linear_layer_names(arg)),
                    })
        except Exception as exc:  # noqa: BLE001
            record("observer_error", where="prepare:before", error=f"{type(exc).__name__}: {exc}")
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            record("prepare", accelerator=acc_id, models=models,
                    error={"type": type(exc).__name__, "message": str(exc)})
            raise
        try:
            # FSDP2's prepare returns a list where the others return a tuple
            outputs = tuple(result) if isinstance(result, (tuple, list)) else (result,)
            optimizers = observe.optimizers_among(outputs)
            plugin = observe.sharding_plugin(self)
            for info in models:
                prepared = outputs[info["arg_index"]] if info["arg_index"] < len(outputs) else None
                if prepared is None:
                    continue
                inner = _unwrap(prepared)
                info["fp8_layers"] = observe.fp8_layer_names(inner)
                info["prepared_class"] = type(prepared).__name__
                if optimizers:  # prepared together, as the Trainer and most scripts do
                    info["outside_optimizer"] = observe.optimizer_membership(inner, optimizers, plugin)
                if plugin:
                    info["wrapper"] = {"plugin": plugin, **observe.sharding(prepared)}
                _watch_forwards(prepared, acc_id, len(info["fp8_layers"]), info["arg_index"])
                watch_eval(prepared, acc_id, info["arg_index"])
                watch_numerics(prepared, acc_id, info["arg_index"])
            record("prepare", accelerator=acc_id, models=models)
        except Exception as exc:  # noqa: BLE001
            record("observer_error", where="prepare:after", error=f"{type(exc).__name__}: {exc}")
        return result

    return prepare


def _watch_forwards(model: Any, acc_id: int | None, layer_count: int, arg_index: int) -> None:
    """Count FP8 module forwards during the first top-level forward passes, record, then remove the hooks."""
    from fp8doctor.observe import FP8ForwardCounter, fp8_active

    counter = FP8ForwardCounter().attach(model)
    seen = {"forwards": 0}
    handles: list[Any] = []

    def snapshot(final: bool) -> None:
        data = counter.to_dict()
        record("forwards", accelerator=acc_id, arg_index=arg_index, forwards=seen["forwards"], counter=data,
                fp8_layers=layer_count, fp8_active=fp8_active(layer_count, data), final=final)

    def after_forward(_module: Any, _inputs: Any, _output: Any) -> None:
        seen["forwards"] += 1
        if seen["forwards"] >= FORWARDS_TO_WATCH:
            snapshot(final=True)
            counter.detach()
            for h in handles:
                h.remove()
            entry["done"] = True

    handles.append(model.register_forward_hook(after_forward))
    entry = {"done": False, "snapshot": snapshot}
    STATE["forwards"].append(entry)


def _wrap_backward(original: Any) -> Any:
    @functools.wraps(original)
    def backward(self: Any, loss: Any, *args: Any, **kwargs: Any) -> Any:
        if STATE["losses"] < MAX_LOSSES:
            try:
                STATE["losses"] += 1
                record("loss", source="accelerator.backward", value=num(loss.detach().float().item()))
            except Exception:  # noqa: BLE001
                pass
        out = original(self, loss, *args, **kwargs)
        after_backward(self)
        return out

    return backward


def _wrap_ao_recipe_init(original: Any) -> Any:
    """Notes which AORecipeKwargs got a config from the user (from 1.13 its __post_init__ builds one otherwise)."""
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if (kwargs.get("config") if "config" in kwargs else (args[0] if args else None)) is not None:
            STATE["ao_user_configs"].add(id(self))

    return __init__


def _patch_accelerate(module: Any) -> None:
    cls = getattr(module, "Accelerator", None)
    if cls is None or "accelerate" in STATE["patched"]:
        return
    STATE["patched"].add("accelerate")
    recipe = getattr(sys.modules.get("accelerate.utils"), "AORecipeKwargs", None)
    if recipe is not None:
        recipe.__init__ = _wrap_ao_recipe_init(recipe.__init__)
    cls.__init__ = _wrap_accelerator_init(cls.__init__)
    cls.prepare = _wrap_prepare(cls.prepare)
    cls.backward = _wrap_backward(cls.backward)
    record("versions", versions=versions())


# ---- import hook -----------------------------------------------------------------------------------------------


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: lets the other finders find a target module and patches it after it executes."""

    def __init__(self) -> None:
        self._busy = threading.local()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _TARGETS or getattr(self._busy, "on", False):
            return None
        self._busy.on = True
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy.on = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            original_exec(module)
            try:
                if fullname == "accelerate.accelerator":
                    _patch_accelerate(module)
                else:
                    patch_transformers(fullname, module)
            except Exception as exc:  # noqa: BLE001
                record("observer_error", where=f"patch:{fullname}", error=f"{type(exc).__name__}: {exc}")

        loader.exec_module = exec_module
        return spec


def _at_exit() -> None:
    for entry in STATE["forwards"]:
        if not entry["done"]:
            entry["snapshot"](final=False)
    record("exit", losses_recorded=STATE["losses"], accelerators=STATE["next_id"])


def install() -> bool:
    """Start observing this process if FP8DOCTOR_WATCH_DIR names a directory; True when installed."""
    directory = os.environ.get(WATCH_DIR_ENV)
    if not directory or not os.path.isdir(directory) or not recorder.start(directory):
        return False
    record("start")  # every Python process of the command leaves a trace, even one that never imports accelerate
    already = [name for name in _TARGETS if name in sys.modules]
    for name in already:  # imported before us (unusual: sitecustomize runs first); patch in place
        if name == "accelerate.accelerator":
            _patch_accelerate(sys.modules[name])
        else:
            patch_transformers(name, sys.modules[name])
    sys.meta_path.insert(0, _PostImportFinder())
    atexit.register(_at_exit)
    return True
