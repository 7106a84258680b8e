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
import json
import os
import sys
import threading
import time
import traceback
from typing import Any

from fp8doctor.watch import records

WATCH_DIR_ENV = "FP8DOCTOR_WATCH_DIR"
# Env vars whose value at a given moment explains which precision won.
PRECISION_ENV = (
    "ACCELERATE_MIXED_PRECISION",
    "ACCELERATE_FP8_BACKEND",
    "ACCELERATE_USE_CPU",
    "ACCELERATE_CONFIG_FILE",
    "ACCELERATE_USE_DEEPSPEED",
    "ACCELERATE_USE_FSDP",
)
FP8_HANDLER_CLASSES = ("TERecipeKwargs", "AORecipeKwargs", "MSAMPRecipeKwargs", "FP8RecipeKwargs")
FORWARDS_TO_WATCH = 3  # top-level forward passes after prepare() whose FP8 module calls are counted
MAX_LOSSES = 1000

_TARGETS = ("accelerate.accelerator", "transformers.training_args", "transformers.trainer")


def _env_now() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in PRECISION_ENV}


def _plain(value: Any) -> Any:
    """A JSON-safe, short view of a value (enums by value, objects by class name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    inner = getattr(value, "value", None)
    if isinstance(inner, (str, int)):
        return inner
    return str(value)[:200]


def _num(value: Any) -> Any:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if f == f and f not in (float("inf"), float("-inf")) else str(f)


def _callers(skip_files: tuple[str, ...], limit: int = 6) -> list[str]:
    """'file.py:function' of the frames that led here, innermost first, outside the observer itself."""
    out = []
    for frame in reversed(traceback.extract_stack()[:-1]):
        if frame.filename == __file__ or frame.filename.endswith(skip_files):
            continue
        out.append(f"{frame.filename}:{frame.lineno}:{frame.name}")
        if len(out) >= limit:
            break
    return out


def _current_trainer_args() -> dict[str, Any] | None:
    """The TrainingArguments of the transformers Trainer being constructed right now, if any."""
    trainers = _state["trainers"]
    args = getattr(trainers[-1], "args", None) if trainers else None
    if args is None:
        return None
    return {
        "trainer_class": type(trainers[-1]).__name__,
        "args_class": type(args).__name__,
        "bf16": getattr(args, "bf16", None),
        "fp16": getattr(args, "fp16", None),
        "mixed_precision": getattr(args, "mixed_precision", None),
    }


class Recorder:
    """Appends JSON lines to this process's file, one whole line per write(2); reopens after fork so each pid keeps
    its own file (named <rank>-<pid>.jsonl under `watch --records`, else proc-<pid>.jsonl)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._pid = -1
        self._fd: int | None = None
        self._lock = threading.Lock()
        # A fork taken while another thread writes must not inherit a held lock.
        os.register_at_fork(after_in_child=self._new_lock)

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def _file(self) -> Any:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            name = (records.record_file_name(os.environ, self._pid) if os.environ.get(records.RECORDS_ENV)
                    else f"proc-{self._pid}.jsonl")
            self._fd = records.open_append(os.path.join(self.directory, name))  # kept open for the process's life
            self._write_line({"kind": "process", **_process_facts()})
        return self._fd

    def _write_line(self, record: dict[str, Any]) -> None:
        from fp8doctor.redact import redact  # record files outlive the run under --records: no secret in them

        record.setdefault("t", time.time())
        records.append_line(self._fd, json.dumps(redact(record), default=_plain))

    def write(self, kind: str, **fields: Any) -> None:
        try:
            with self._lock:
                self._file()
                self._write_line({"kind": kind, **fields})
        except Exception:  # noqa: BLE001 - observing must never break the watched command
            pass


def _process_facts() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": list(sys.argv) if hasattr(sys, "argv") else [],
        "executable": sys.executable,
        "host": records.host_name(),
        "watch_id": os.environ.get(records.WATCH_ID_ENV),
        "rank_env": {k: os.environ.get(k) for k in records.IDENTITY_ENV if os.environ.get(k) is not None},
        "env_at_start": _START_ENV,
        "accelerate_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("ACCELERATE_")},
    }


_START_ENV = _env_now()
_recorder: Recorder | None = None
_state: dict[str, Any] = {
    "accelerators": {}, "next_id": 0, "losses": 0, "patched": set(), "forwards": [], "trainers": [],
}


def _record(kind: str, **fields: Any) -> None:
    if _recorder is not None:
        _recorder.write(kind, **fields)


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
            out[name] = _plain(getattr(acc, name))
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
        acc_id = _state["next_id"]
        _state["next_id"] += 1
        record: dict[str, Any] = {"id": acc_id}
        try:
            bound = signature.bind_partial(self, *args, **kwargs).arguments if signature else kwargs
            record["arg_mixed_precision"] = _plain(bound.get("mixed_precision"))
            record["handlers"] = _handler_names(bound.get("kwargs_handlers"))
            record["fp8_handlers"] = [h for h in record["handlers"] if h in FP8_HANDLER_CLASSES]
            record["env"] = _env_now()
            record["trainer_args"] = _current_trainer_args()
            record["callers"] = _callers(("accelerate/accelerator.py",))
            state_cls = sys.modules.get("accelerate.state")
            shared = getattr(getattr(state_cls, "AcceleratorState", None), "_shared_state", None)
            record["state_existed"] = bool(shared)
        except Exception as exc:  # noqa: BLE001
            record["observer_error"] = f"{type(exc).__name__}: {exc}"
        try:
            original(self, *args, **kwargs)
        except BaseException as exc:
            record["error"] = {"type": type(exc).__name__, "message": str(exc)}
            _record("accelerator", **record)
            raise
        _state["accelerators"][id(self)] = acc_id
        record["result"] = _accelerator_result(self)
        _record("accelerator", **record)
        _record_device(self)

    return __init__


def _record_device(acc: Any) -> None:
    """Once per process: the accelerator device this rank trains on and its compute capability (GPU: "9.0")."""
    if _state.get("device_recorded"):
        return
    _state["device_recorded"] = True
    try:
        import torch

        device = acc.device
        info: dict[str, Any] = {"device": str(device), "type": device.type}
        if device.type == "cuda":
            major, minor = torch.cuda.get_device_capability(device)
            info.update(name=torch.cuda.get_device_name(device), capability=f"{major}.{minor}")
        _record("device", **info)
    except Exception as exc:  # noqa: BLE001
        _record("observer_error", where="device", error=f"{type(exc).__name__}: {exc}")


def _eligible_rule(acc: Any) -> str:
    backend = ""
    with contextlib.suppress(Exception):
        backend = str(_plain(acc.fp8_backend)).upper()
    if backend not in ("TE", "AO"):
        backend = os.environ.get("ACCELERATE_FP8_BACKEND", "AO").upper()
    return "accelerate-te" if backend == "TE" else "accelerate-ao"


def _unwrap(model: Any) -> Any:
    while hasattr(model, "module") and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
        model = model.module
    return model


def _wrap_prepare(original: Any) -> Any:
    @functools.wraps(original)
    def prepare(self: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        from fp8doctor import observe

        acc_id = _state["accelerators"].get(id(self))
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
            _record("observer_error", where="prepare:before", error=f"{type(exc).__name__}: {exc}")
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            _record("prepare", accelerator=acc_id, models=models,
                    error={"type": type(exc).__name__, "message": str(exc)})
            raise
        try:
            outputs = result if isinstance(result, tuple) else (result,)
            for info in models:
                prepared = outputs[info["arg_index"]] if info["arg_index"] < len(outputs) else None
                if prepared is None:
                    continue
                inner = _unwrap(prepared)
                info["fp8_layers"] = observe.fp8_layer_names(inner)
                info["prepared_class"] = type(prepared).__name__
                _watch_forwards(prepared, acc_id, len(info["fp8_layers"]), info["arg_index"])
            _record("prepare", accelerator=acc_id, models=models)
        except Exception as exc:  # noqa: BLE001
            _record("observer_error", where="prepare:after", error=f"{type(exc).__name__}: {exc}")
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
        _record("forwards", accelerator=acc_id, arg_index=arg_index, forwards=seen["forwards"], counter=data,
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
    _state["forwards"].append(entry)


def _wrap_backward(original: Any) -> Any:
    @functools.wraps(original)
    def backward(self: Any, loss: Any, *args: Any, **kwargs: Any) -> Any:
        if _state["losses"] < MAX_LOSSES:
            try:
                _state["losses"] += 1
                _record("loss", source="accelerator.backward", value=_num(loss.detach().float().item()))
            except Exception:  # noqa: BLE001
                pass
        return original(self, loss, *args, **kwargs)

    return backward


def _patch_accelerate(module: Any) -> None:
    cls = getattr(module, "Accelerator", None)
    if cls is None or "accelerate" in _state["patched"]:
        return
    _state["patched"].add("accelerate")
    cls.__init__ = _wrap_accelerator_init(cls.__init__)
    cls.prepare = _wrap_prepare(cls.prepare)
    cls.backward = _wrap_backward(cls.backward)
    _record("versions", versions=_versions())


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in ("torch", "accelerate", "transformers", "torchao", "transformer-engine"):
        out[dist] = None
        for name in (dist, dist.replace("-", "_")):
            try:
                out[dist] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


# ---- transformers ----------------------------------------------------------------------------------------------


def _wrap_post_init(original: Any) -> Any:
    @functools.wraps(original)
    def __post_init__(self: Any, *args: Any, **kwargs: Any) -> Any:
        before = _env_now()
        try:
            return original(self, *args, **kwargs)
        finally:
            _record("training_args", cls=type(self).__name__, env_before=before, env_after=_env_now(),
                    bf16=getattr(self, "bf16", None), fp16=getattr(self, "fp16", None),
                    mixed_precision=getattr(self, "mixed_precision", None),
                    callers=_callers(("transformers/training_args.py",), limit=3))

    return __post_init__


def _wrap_trainer_log(original: Any) -> Any:
    @functools.wraps(original)
    def log(self: Any, logs: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, logs, *args, **kwargs)
        finally:
            try:
                if isinstance(logs, dict) and ("loss" in logs or "train_loss" in logs):
                    step = getattr(getattr(self, "state", None), "global_step", None)
                    _record("loss", source="trainer.log", step=step,
                            values={k: _num(logs[k]) for k in ("loss", "train_loss") if k in logs})
            except Exception:  # noqa: BLE001
                pass

    return log


def _wrap_trainer_init(original: Any) -> Any:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        _state["trainers"].append(self)
        try:
            original(self, *args, **kwargs)
        finally:
            _state["trainers"].pop()

    return __init__


def _patch_transformers(name: str, module: Any) -> None:
    if name == "transformers.training_args":
        cls = getattr(module, "TrainingArguments", None)
        if cls is not None and "training_args" not in _state["patched"]:
            _state["patched"].add("training_args")
            cls.__post_init__ = _wrap_post_init(cls.__post_init__)
    elif name == "transformers.trainer":
        cls = getattr(module, "Trainer", None)
        if cls is not None and "trainer" not in _state["patched"]:
            _state["patched"].add("trainer")
            cls.log = _wrap_trainer_log(cls.log)
            cls.__init__ = _wrap_trainer_init(cls.__init__)


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
                    _patch_transformers(fullname, module)
            except Exception as exc:  # noqa: BLE001
                _record("observer_error", where=f"patch:{fullname}", error=f"{type(exc).__name__}: {exc}")

        loader.exec_module = exec_module
        return spec


def _at_exit() -> None:
    for entry in _state["forwards"]:
        if not entry["done"]:
            entry["snapshot"](final=False)
    _record("exit", losses_recorded=_state["losses"], accelerators=_state["next_id"])


def install() -> bool:
    """Start observing this process if FP8DOCTOR_WATCH_DIR names a directory; True when installed."""
    global _recorder
    directory = os.environ.get(WATCH_DIR_ENV)
    if not directory or not os.path.isdir(directory) or _recorder is not None:
        return False
    _recorder = Recorder(directory)
    _record("start")  # every Python process of the command leaves a trace, even one that never imports accelerate
    already = [name for name in _TARGETS if name in sys.modules]
    for name in already:  # imported before us (unusual: sitecustomize runs first); patch in place
        if name == "accelerate.accelerator":
            _patch_accelerate(sys.modules[name])
        else:
            _patch_transformers(name, sys.modules[name])
    sys.meta_path.insert(0, _PostImportFinder())
    atexit.register(_at_exit)
    return True
