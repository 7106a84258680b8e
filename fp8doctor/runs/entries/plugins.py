"""The Accelerator of the sharded entries, built in each rank the way a user's script builds it: `fsdp2` is
`Accelerator(mixed_precision=..., kwargs_handlers=[recipe], fsdp_plugin=FullyShardedDataParallelPlugin(
fsdp_version=2, auto_wrap_policy="transformer_based_wrap"))`, `deepspeed` the same with
`deepspeed_plugin=DeepSpeedPlugin(zero_stage=2)`.

On CPU, Accelerate keeps `distributed_type` MULTI_CPU and drops the plugin (its state honours an FSDP or DeepSpeed
plugin only for GPU-like devices; knowledge/distributed.py holds the observation). For FSDP2 the entry then does
the two assignments Accelerate's state would have done (`distributed_type = FSDP`, `fsdp_plugin = plugin` with
the precision set), so `prepare()` runs Accelerate's own FSDP2 path (torchao conversion, then `fully_shard` per
decoder layer, float8 all-gather scales) over gloo; the result says so (`wrapper.state_forced`).
"""

from __future__ import annotations

from typing import Any

from fp8doctor.runs.entries.common import Context

DEEPSPEED_ZERO_STAGE = 2


def handlers(ctx: Context, sharded: bool) -> list[Any]:
    """The recipe handler; torchao's tensorwise recipe with float8 all-gather when the model is sharded."""
    spec = ctx.spec
    if spec.backend == "torchao":
        from accelerate.utils import AORecipeKwargs

        from fp8doctor.runs.backends.torchao import sharded_config

        return [AORecipeKwargs(config=sharded_config(spec.recipe, ctx.emulate) if sharded else None)]
    from fp8doctor.runs.backends import recipe_handler

    handler = recipe_handler(spec.backend, spec.recipe, ctx.emulate)
    return [handler] if handler is not None else []


def mixed_precision(ctx: Context) -> str:
    return ctx.spec.mixed_precision if ctx.spec.backend != "none" else "bf16"


def fsdp2_accelerator(ctx: Context) -> Any:
    from accelerate import Accelerator, FullyShardedDataParallelPlugin
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    acc = Accelerator(mixed_precision=mixed_precision(ctx), kwargs_handlers=handlers(ctx, True), fsdp_plugin=plugin)
    seen = str(getattr(acc.distributed_type, "value", acc.distributed_type))
    wrapper = ctx.result.setdefault("wrapper", {})
    wrapper.update({"plugin": "fsdp2", "distributed_type_seen": seen, "state_forced": False})
    if acc.distributed_type != DistributedType.FSDP and ctx.device == "cpu":
        acc.state.distributed_type = DistributedType.FSDP
        acc.state.fsdp_plugin = plugin
        # as AcceleratorState.__init__ ends: the PartialState copy, which a later AcceleratorState() re-reads
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        if acc.mixed_precision != "no":
            plugin.set_mixed_precision(acc.mixed_precision)
        wrapper["state_forced"] = True
        ctx.note(f"CPU: Accelerate left distributed_type {seen} and dropped the FSDP plugin; the entry set "
                 "distributed_type=FSDP and the plugin on its state, so prepare() ran Accelerate's FSDP2 path "
                 "over gloo")
    return acc


def deepspeed_accelerator(ctx: Context) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(zero_stage=DEEPSPEED_ZERO_STAGE, gradient_accumulation_steps=1)
    acc = Accelerator(mixed_precision=mixed_precision(ctx), kwargs_handlers=handlers(ctx, False),
                      deepspeed_plugin=plugin)
    if acc.state.deepspeed_plugin is not None:
        from fp8doctor.runs.model import MODEL_SIZES

        # no dataloader goes through prepare(): the micro batch goes into the config, as Accelerate asks
        acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = \
            MODEL_SIZES[ctx.spec.size]["batch"]
    seen = str(getattr(acc.distributed_type, "value", acc.distributed_type))
    ctx.result.setdefault("wrapper", {}).update({"plugin": f"deepspeed-zero{DEEPSPEED_ZERO_STAGE}",
                                                 "distributed_type_seen": seen, "state_forced": False})
    return acc


ACCELERATORS = {"fsdp2": fsdp2_accelerator, "deepspeed": deepspeed_accelerator}

