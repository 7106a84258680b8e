"""Observer for the LLaMA-Factory probe: on PYTHONPATH of the `llamafactory-cli` runs only.

When LAB_LF_OBS names a file, it wraps (after their modules load, through an import hook) transformers'
`TrainingArguments.__post_init__` and Accelerate's `Accelerator.__init__`, `prepare` and `backward`. Each wrapper
calls the original with the same arguments and appends one JSON line of what it saw: the precision variables
before and after, what the Accelerator was given and what it decided, and the FP8 layers `prepare` returned.
With LAB_AO_EMULATE=1, every torchao `Float8LinearConfig` is built with emulate=True (torch's FP8 matmul on CPU
is far too slow for a probe); conversion and the precision decision are untouched. Standard library only.
"""

from __future__ import annotations

import functools
import importlib.abc
import json
import os
import sys
import traceback

OBS_ENV = "LAB_LF_OBS"
WATCHED_ENV = ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_FP8_BACKEND", "FP8_BACKEND", "ACCELERATE_USE_CPU",
               "FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER", "ACCELERATE_CONFIG_FILE")


def _env() -> dict:
    return {k: os.environ.get(k) for k in WATCHED_ENV if os.environ.get(k) is not None}


def _emit(event: str, **data) -> None:
    data = {"event": event, "pid": os.getpid(), **data}
    with open(os.environ[OBS_ENV], "a") as out:
        out.write(json.dumps(data, default=str) + "\n")


def _plain(value):
    return None if value is None else str(getattr(value, "value", value))


def _exc(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": str(exc)}


def _safe(read):
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - a property that raises is itself worth recording
        return f"<{type(exc).__name__}: {exc}>"


def _callers(limit: int = 4) -> list[str]:
    frames = [f for f in traceback.extract_stack()[:-2] if f.filename != __file__]
    return [f"{os.path.basename(f.filename)}:{f.name}" for f in frames[-limit:]]


def _fp8_layers(obj) -> tuple[int, bool | None]:
    count, emulate = 0, None
    modules = getattr(obj, "modules", None)
    if not callable(modules):
        return 0, None
    for module in modules():
        if type(module).__name__.startswith("Float8"):
            count += 1
            cfg = getattr(module, "config", None)
            if cfg is not None and hasattr(cfg, "emulate"):
                emulate = bool(cfg.emulate)
    return count, emulate


def _patch_training_args(module) -> None:
    cls = module.TrainingArguments
    original = cls.__post_init__

    @functools.wraps(original)
    def post_init(self, *args, **kwargs):
        before = _env()
        original(self, *args, **kwargs)
        _emit("training_args", cls=type(self).__module__ + "." + type(self).__name__,
              bf16=getattr(self, "bf16", None), fp16=getattr(self, "fp16", None),
              fp8=getattr(self, "fp8", None), env_before=before, env_after=_env())

    cls.__post_init__ = post_init


def _patch_accelerator(module) -> None:
    cls = module.Accelerator
    init, prepare, backward = cls.__init__, cls.prepare, cls.backward

    @functools.wraps(init)
    def wrapped_init(self, *args, **kwargs):
        handlers = [type(h).__name__ for h in (kwargs.get("kwargs_handlers") or [])]
        seen = {"mixed_precision_arg": kwargs.get("mixed_precision", "<not passed>"), "kwargs_handlers": handlers,
                "env": _env(), "callers": _callers()}
        try:
            init(self, *args, **kwargs)
        except BaseException as exc:
            _emit("accelerator_init", **seen, raised=_exc(exc))
            raise
        state = getattr(self, "state", None)
        _emit("accelerator_init", **seen, mixed_precision=_plain(getattr(state, "mixed_precision", None)),
              fp8_backend=_safe(lambda: _plain(getattr(self, "fp8_backend", None))),
              fp8_enabled=_safe(lambda: getattr(self, "fp8_enabled", None)))

    @functools.wraps(prepare)
    def wrapped_prepare(self, *args, **kwargs):
        try:
            result = prepare(self, *args, **kwargs)
        except BaseException as exc:
            _emit("prepare", raised=_exc(exc))
            raise
        outs = result if isinstance(result, tuple) else (result,)
        counts = [_fp8_layers(o) for o in outs]
        layers = sum(c for c, _ in counts)
        emulate = next((e for _, e in counts if e is not None), None)
        _emit("prepare", fp8_layers=layers, emulate=emulate,
              mixed_precision=_plain(getattr(self.state, "mixed_precision", None)))
        return result

    @functools.wraps(backward)
    def wrapped_backward(self, loss, *args, **kwargs):
        result = backward(self, loss, *args, **kwargs)
        try:
            value = float(loss.detach().float().item())
        except Exception:  # noqa: BLE001 - a loss we cannot read is still a step
            value = None
        _emit("backward", loss=value)
        return result

    cls.__init__, cls.prepare, cls.backward = wrapped_init, wrapped_prepare, wrapped_backward


def _patch_float8_config(module) -> None:
    cls = module.Float8LinearConfig
    original = cls.__post_init__

    def post_init(self):
        original(self)
        object.__setattr__(self, "emulate", True)

    cls.__post_init__ = post_init


PATCHES = {"transformers.training_args": _patch_training_args, "accelerate.accelerator": _patch_accelerator}
if os.environ.get("LAB_AO_EMULATE") == "1":
    PATCHES["torchao.float8.config"] = _patch_float8_config


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        patch = PATCHES.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(mod):
            exec_module(mod)
            try:
                patch(mod)
            except Exception as exc:  # noqa: BLE001 - observing must never stop the run
                _emit("observer_error", module=name, error=_exc(exc))

        spec.loader.exec_module = exec_and_patch
        return spec


if os.environ.get("LAB_CPU_SHIMS") == "1":
    import lab_cpu_shims

    lab_cpu_shims.install()
if os.environ.get(OBS_ENV):
    sys.meta_path.insert(0, _Hook())
