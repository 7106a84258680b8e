"""Accelerate + FSDP2 plugin + torchao FP8 (emulated) on the tiny Llama, for `torchrun --nproc_per_node 2` on CPU.

On CPU Accelerate keeps MULTI_CPU and drops the FSDP plugin (knowledge/distributed.py), so the script sets the
state as Accelerate's does on GPUs before prepare(), as fp8doctor's fsdp2 entry does; prepare() then runs
Accelerate's own FSDP2 path over gloo. Prints "LOSS <rank> <step> <repr>" per step.
"""

from __future__ import annotations

from accelerate import Accelerator, FullyShardedDataParallelPlugin
from accelerate.state import PartialState
from accelerate.utils import AORecipeKwargs, DistributedType
from tiny import build_model, train
from torchao.float8 import Float8LinearConfig


def main() -> None:
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    config = Float8LinearConfig(emulate=True, enable_fsdp_float8_all_gather=True)
    accelerator = Accelerator(mixed_precision="fp8", kwargs_handlers=[AORecipeKwargs(config=config)],
                              fsdp_plugin=plugin)
    if accelerator.distributed_type != DistributedType.FSDP:
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
        # as AcceleratorState.__init__ ends: the PartialState copy, which a later AcceleratorState() re-reads
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        plugin.set_mixed_precision(accelerator.mixed_precision)
    train(accelerator, build_model(seed=0), steps=3, rows_seed=accelerator.process_index)
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()
