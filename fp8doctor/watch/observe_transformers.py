"""The observer's transformers half: what TrainingArguments did to the environment, the Trainer's logged losses,
and which TrainingArguments the Trainer being built carries (for the Accelerator it creates)."""

from __future__ import annotations

import functools
from typing import Any

from fp8doctor.watch.recorder import STATE, callers, env_now, num, record


def current_trainer_args() -> dict[str, Any] | None:
    """The TrainingArguments of the transformers Trainer being constructed right now, if any."""
    trainers = STATE["trainers"]
    args = getattr(trainers[-1], "args", None) if trainers else None
    if args is None:
        return None
    return {
        "trainer_class": type(trainers[-1]).__name__,
        "args_class": type(args).__name__,
        "args_module": type(args).__module__,
        "bf16": getattr(args, "bf16", None),
        "fp16": getattr(args, "fp16", None),
        "mixed_precision": getattr(args, "mixed_precision", None),
    }



def _wrap_post_init(original: Any) -> Any:
    @functools.wraps(original)
    def __post_init__(self: Any, *args: Any, **kwargs: Any) -> Any:
        before = env_now()
        try:
            return original(self, *args, **kwargs)
        finally:
            record("training_args", cls=type(self).__name__, module=type(self).__module__, env_before=before,
                   env_after=env_now(), bf16=getattr(self, "bf16", None), fp16=getattr(self, "fp16", None),
                   mixed_precision=getattr(self, "mixed_precision", None),
                   callers=callers(("transformers/training_args.py",), limit=3))

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
                    record("loss", source="trainer.log", step=step,
                            values={k: num(logs[k]) for k in ("loss", "train_loss") if k in logs})
            except Exception:  # noqa: BLE001
                pass

    return log


def _wrap_trainer_init(original: Any) -> Any:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        STATE["trainers"].append(self)
        try:
            original(self, *args, **kwargs)
        finally:
            STATE["trainers"].pop()

    return __init__


def patch_transformers(name: str, module: Any) -> None:
    if name == "transformers.training_args":
        cls = getattr(module, "TrainingArguments", None)
        if cls is not None and "training_args" not in STATE["patched"]:
            STATE["patched"].add("training_args")
            cls.__post_init__ = _wrap_post_init(cls.__post_init__)
    elif name == "transformers.trainer":
        cls = getattr(module, "Trainer", None)
        if cls is not None and "trainer" not in STATE["patched"]:
            STATE["patched"].add("trainer")
            cls.log = _wrap_trainer_log(cls.log)
            cls.__init__ = _wrap_trainer_init(cls.__init__)
