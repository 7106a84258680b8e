"""HF `Trainer` + `TrainingArguments` + environment: how most users (and LLaMA-Factory) reach Accelerate.

The fixed path sets what a user sets: `ACCELERATE_MIXED_PRECISION=fp8` and `ACCELERATE_FP8_BACKEND` in the
environment with `bf16=False` (transformers 5.x copies the variable into `TrainingArguments.mixed_precision` and
passes it to `Accelerator`, which then creates the backend's default recipe itself). A spec's own env wins.
A non-default torchao recipe is added the way transformers builds its Accelerator: a Trainer subclass that
extends `_build_accelerator_args` with the recipe handler. On CPU, emulate=True reaches torchao's config
through `fp8doctor.runs.backends.torchao.enable_cpu_emulation` (set up by the worker), not through the user path.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from fp8doctor.runs.backends import backend_env, needs_recipe_handler, recipe_handler
from fp8doctor.runs.entries.common import (
    Context,
    accelerator_facts,
    finish,
    record_eligible,
    record_fp8_layers,
    record_grad_norm,
    record_outside_optimizer,
)

NAMES = ("trainer",)
LAUNCHES_PROCESSES = False


def fixed_env(ctx: Context) -> dict[str, str]:
    """The user's FP8 variables; a spec that sets ACCELERATE_MIXED_PRECISION itself defines them all (a stray
    ACCELERATE_FP8_BACKEND next to a non-fp8 precision changes what Accelerate does)."""
    if "ACCELERATE_MIXED_PRECISION" in ctx.spec.env:
        return {}
    env = {"ACCELERATE_MIXED_PRECISION": ctx.spec.mixed_precision, **backend_env(ctx.spec.backend, ctx.spec.recipe)}
    return {k: v for k, v in env.items() if k not in ctx.spec.env}


class _Rows:
    """A map-style dataset over the synthetic batches' rows."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def run(ctx: Context) -> None:
    env = fixed_env(ctx) if ctx.spec.backend != "none" else {}
    extra_handler = None
    if needs_recipe_handler(ctx.spec.backend, ctx.spec.recipe):
        extra_handler = recipe_handler(ctx.spec.backend, ctx.spec.recipe, ctx.emulate)
    run_trainer(ctx, bf16=ctx.spec.bf16 or ctx.spec.backend == "none", env=env, extra_handler=extra_handler)


def run_trainer(ctx: Context, *, bf16: bool, env: dict[str, str], extra_handler: Any = None,
                before_trainer: Callable[[], None] | None = None) -> None:
    """Train with the HF Trainer, recording the same observations as every other entry."""
    import transformers
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from fp8doctor.runs.model import build_model, size_params, synthetic_batches

    spec = ctx.spec
    os.environ.update(env)
    ctx.result["entry_env"] = dict(env)
    transformers.logging.set_verbosity_error()
    t = time.perf_counter()
    model = build_model(spec.size, spec.seed)
    record_eligible(ctx, model)
    rows = [{k: v[i] for k, v in b.items()} for b in synthetic_batches(spec.size, spec.seed, spec.steps)
            for i in range(b["input_ids"].shape[0])]
    ctx.timing("model_build", time.perf_counter() - t)
    batch = size_params(spec.size)["batch"]
    state: dict[str, Any] = {"counter": None, "t": 0.0}
    losses: list[Any] = ctx.result["losses"]
    times: list[float] = ctx.result["step_times_s"]

    class Observe(TrainerCallback):
        def on_step_begin(self, args: Any, st: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if state["counter"] is None and model is not None:
                state["counter"] = record_fp8_layers(ctx, model)
                if kw.get("optimizer") is not None:
                    record_outside_optimizer(ctx, model, kw["optimizer"])
            state["t"] = time.perf_counter()

        def on_step_end(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            times.append(round(time.perf_counter() - state["t"], 5))

        def on_log(self, args: Any, st: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                v = float(logs["loss"])
                losses.append(v if v == v and abs(v) != float("inf") else str(v))
                if "grad_norm" in logs:  # before clipping, as the Trainer computes it
                    g = float(logs["grad_norm"])
                    record_grad_norm(ctx, g if g == g and abs(g) != float("inf") else str(g))

    with tempfile.TemporaryDirectory(prefix="fp8doctor-trainer-") as out:
        args = TrainingArguments(
            output_dir=out, max_steps=spec.steps, per_device_train_batch_size=batch, learning_rate=3e-3,
            lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, save_strategy="no", report_to=[],
            bf16=bf16, use_cpu=ctx.device == "cpu", dataloader_num_workers=0, seed=spec.seed,
            disable_tqdm=True, data_seed=spec.seed,
        )
        ctx.result["training_args"] = {"bf16": args.bf16, "mixed_precision": getattr(args, "mixed_precision", None)}
        trainer_cls = Trainer
        if extra_handler is not None:
            handler = extra_handler

            class RecipeTrainer(Trainer):
                def _build_accelerator_args(self, **kwargs: Any) -> dict[str, Any]:
                    built = super()._build_accelerator_args(**kwargs)
                    built["kwargs_handlers"] = [*built.get("kwargs_handlers", []), handler]
                    return built

            trainer_cls = RecipeTrainer
            ctx.note("recipe handler added by overriding Trainer._build_accelerator_args")
        if before_trainer is not None:
            before_trainer()
        t = time.perf_counter()
        trainer = trainer_cls(model=model, args=args, train_dataset=_Rows(rows), callbacks=[Observe()])
        ctx.result["accelerator"] = accelerator_facts(trainer.accelerator)
        ctx.device = str(trainer.accelerator.device)
        ctx.timing("prepare", time.perf_counter() - t)
        t = time.perf_counter()
        trainer.train()
        ctx.timing("steps", time.perf_counter() - t)
    counter = state["counter"]
    if counter is None:  # no step ran
        counter = record_fp8_layers(ctx, trainer.model)
    finish(ctx, counter, batch * size_params(spec.size)["seq"])
