"""One rank of a `distributed` probe case: `python -m torch.distributed.run ... _dist_rank.py CASE_JSON OUT_DIR`.

Builds the plugin, the AO recipe handler and `Accelerator(...)` as a user's script does, records the state,
optionally sets the FSDP state the way Accelerate's own state does on a GPU (`force_state`: on CPU the plugin is
dropped), prepares a tiny Llama with its optimizer, records the order in which Accelerate converted the layers
and wrapped the model, the sharded units and the FP8 layers inside them, and trains two steps. Writes
OUT_DIR/rank<N>.json; a hang is reported by faulthandler into OUT_DIR/hang<N>.txt.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import traceback

HANG_AFTER_S = 100
BATCH = 2


def tiny_llama():  # noqa: ANN201 - the cell's transformers
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


def wrap_calls(events: list[str]) -> None:
    """Record (and call through) the conversion and the wrapping, in the order Accelerate makes them."""
    import accelerate.accelerator as acc_mod
    import torch.distributed.fsdp as fsdp

    def recorder(owner: object, name: str, label: str) -> None:
        real = getattr(owner, name, None)
        if real is None:
            return

        def wrapped(*args: object, **kwargs: object) -> object:
            if not events or events[-1] != label:
                events.append(label)
            return real(*args, **kwargs)

        setattr(owner, name, wrapped)

    recorder(acc_mod, "convert_model_to_fp8_ao", "convert")
    recorder(fsdp, "fully_shard", "fully_shard")
    cls = fsdp.FullyShardedDataParallel
    real_init = cls.__init__

    def fsdp1_init(self: object, *args: object, **kwargs: object) -> None:
        if not events or events[-1] != "fsdp1_wrap":
            events.append("fsdp1_wrap")
        real_init(self, *args, **kwargs)

    cls.__init__ = fsdp1_init
    try:
        import deepspeed

        recorder(deepspeed, "initialize", "deepspeed_initialize")
    except ImportError:
        pass


def sharding(model: object) -> dict:
    units, inside, gather = [], [], []
    shard_names = ("FSDPModule", "FullyShardedDataParallel", "DeepSpeedEngine")
    for name, mod in model.named_modules():  # type: ignore[attr-defined]
        mro = {c.__name__ for c in type(mod).__mro__}
        if mro & set(shard_names):
            units.append(name or "<root>")
    for name, mod in model.named_modules():  # type: ignore[attr-defined]
        if "Float8Linear" in {c.__name__ for c in type(mod).__mro__}:
            if any(u == "<root>" or name.startswith(u + ".") for u in units):
                inside.append(name)
            weight = getattr(mod, "weight", None)
            gather.append("Float8" in type(getattr(weight, "_local_tensor", weight)).__name__)
    return {"units": len(units), "fp8_inside_units": len(inside), "float8_all_gather": bool(gather) and all(gather)}


def run(case: dict, out: dict) -> None:
    import torch
    from accelerate import Accelerator
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    events: list[str] = []
    wrap_calls(events)
    stage = "plugin"
    try:
        plugin_kwargs: dict = {}
        if case["plugin"].startswith("fsdp"):
            from accelerate import FullyShardedDataParallelPlugin

            extra = {"fsdp_version": 2} if case["plugin"] == "fsdp2" else {}
            plugin_kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(
                auto_wrap_policy="transformer_based_wrap", **extra)
        elif case["plugin"].startswith("deepspeed"):
            from accelerate.utils import DeepSpeedPlugin

            plugin_kwargs["deepspeed_plugin"] = DeepSpeedPlugin(zero_stage=int(case["plugin"][-1]),
                                                                gradient_accumulation_steps=1)
        stage = "handler"
        handlers = []
        if case["precision"] == "fp8":
            from accelerate.utils import AORecipeKwargs
            from torchao.float8 import Float8LinearConfig

            handlers = [AORecipeKwargs(config=Float8LinearConfig(
                emulate=True, enable_fsdp_float8_all_gather=case.get("all_gather", False)))]
        stage = "init"
        acc = Accelerator(mixed_precision=case["precision"], kwargs_handlers=handlers, **plugin_kwargs)
        backend = getattr(acc, "fp8_backend", None)
        out.update({"distributed_type": str(acc.distributed_type.value), "mixed_precision": acc.mixed_precision,
                    "fp8_backend": None if backend is None else str(getattr(backend, "value", backend)),
                    "num_processes": acc.num_processes})
        if "deepspeed_plugin" in plugin_kwargs and acc.state.deepspeed_plugin is not None:
            # no dataloader is prepared: the micro batch goes into the config, as Accelerate's message says
            acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = BATCH
        if case.get("force_state") and acc.distributed_type != DistributedType.FSDP and "fsdp_plugin" in plugin_kwargs:
            plugin = plugin_kwargs["fsdp_plugin"]
            acc.state.distributed_type = DistributedType.FSDP
            acc.state.fsdp_plugin = plugin
            # as AcceleratorState.__init__ ends: the PartialState copy, which a later AcceleratorState() re-reads
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            if acc.mixed_precision != "no":
                plugin.set_mixed_precision(acc.mixed_precision)
            out["state_forced"] = True
        stage = "prepare"
        model = tiny_llama()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model, opt = acc.prepare(model, opt)
        out["order"] = events
        out["fp8_layers"] = sum("Float8Linear" in {c.__name__ for c in type(m).__mro__} for m in model.modules())
        out["prepared_class"] = type(model).__name__
        out.update(sharding(model))
        stage = "train"
        torch.manual_seed(1)
        losses = []
        for _ in range(2):
            ids = torch.randint(0, 128, (BATCH, 32))
            loss = model(input_ids=ids, labels=ids).loss
            acc.backward(loss)
            opt.step()
            opt.zero_grad()
            losses.append(round(float(loss.detach().float()), 4))
        out["losses"] = losses
        out["outcome"] = "ok"
    except Exception as exc:  # noqa: BLE001 - the failure is the observation
        frames = traceback.extract_tb(exc.__traceback__)
        lib = [f for f in frames if "site-packages" in f.filename]
        where = lib[-1] if lib else frames[-1]
        out.update({"outcome": "raised", "stage": stage, "type": type(exc).__name__,
                    "message": str(exc).split("\n")[0][:400], "order": events,
                    "where": f"{where.filename.split('site-packages/')[-1]}:{where.name}"})


def main(argv: list[str]) -> int:
    case = json.loads(argv[0])
    out_dir = argv[1]
    rank = int(os.environ.get("RANK", "0"))
    hang = open(os.path.join(out_dir, f"hang{rank}.txt"), "w")  # noqa: SIM115 - faulthandler keeps it
    faulthandler.dump_traceback_later(HANG_AFTER_S, exit=True, file=hang)
    out: dict = {"rank": rank}
    run(case, out)
    faulthandler.cancel_dump_traceback_later()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
