"""TrainingArguments(bf16=...) x ACCELERATE_MIXED_PRECISION: is the variable written, what do the arguments expose,
and what does Trainer pass to Accelerator?"""

from __future__ import annotations

import os

from _common import accelerate_env, describe_exception, main, state_facts
from _trainer import TinyRegressor, spy_accelerator_init, tiny_dataset, training_args

EXPOSED = ("bf16", "fp16", "mixed_precision", "half_precision_backend", "fp8")


def run_case(case: dict) -> dict:
    from transformers import Trainer

    result: dict = {"env_before": accelerate_env()}
    try:
        args = training_args(case["bf16"])
    except Exception as exc:  # noqa: BLE001
        return {**result, **describe_exception(exc), "stage": "TrainingArguments"}
    result["env_after_training_args"] = accelerate_env()
    result["training_args"] = {name: (str(getattr(args, name)) if hasattr(args, name) else "<absent>")
                               for name in EXPOSED}
    calls: list = []
    spy_accelerator_init(calls)
    try:
        trainer = Trainer(model=TinyRegressor(), args=args, train_dataset=tiny_dataset())
    except Exception as exc:  # noqa: BLE001
        return {**result, **describe_exception(exc), "stage": "Trainer", "accelerator_calls": calls}
    result["accelerator_calls"] = calls
    result["env_after_trainer"] = accelerate_env()
    result.update(state_facts(trainer.accelerator))
    result["outcome"] = "ok"
    os.environ.pop("ACCELERATE_MIXED_PRECISION", None)
    return result


def cases() -> list[dict]:
    out = []
    for env_mp in (None, "fp8", "bf16"):
        for bf16 in (False, True):
            out.append({"bf16": bf16, "env": {} if env_mp is None else {"ACCELERATE_MIXED_PRECISION": env_mp}})
    return out


if __name__ == "__main__":
    main(cases(), run_case, ("accelerate", "accelerate.utils", "transformers", "transformers.trainer"))
