"""PEFT LoRA over torchao FP8: which layers are FP8 after Accelerate's prepare, and in what precision the adapters
train.

A tiny Llama (hidden 64, intermediate 128, two layers, vocab 320: every projection's dims divisible by 16), LoRA on
q_proj/v_proj/down_proj with rank 8 or 16, in two orders: `peft_then_prepare` (get_peft_model, then
Accelerator(mixed_precision='fp8') with torchao installed, as a Trainer does) and `fp8_then_peft` (torchao's
convert_to_float8_training first, then get_peft_model). Recorded: the class of each LoRA target's base layer and of
its lora_A/lora_B, how many Float8Linear there are, the trainable parameters' dtypes and whether one optimizer step
changed them (and only them), how many trainable parameters the optimizer does not hold after prepare, or the
exception. `peft_then_prepare` runs also with ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER=false, the flag that
decides whether torchao gives converted weights new Parameters. torchao without emulation (torch._scaled_mm on CPU;
the model is tiny).

    python lab/probes/peft_fp8.py   (in a cell with PEFT)   -> {"cases": [...]}
"""

from __future__ import annotations

from _common import describe_exception, main

TARGETS = ["q_proj", "v_proj", "down_proj"]


def _model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                                        tie_word_embeddings=False))


def _layers(model) -> dict:
    """Class names of each LoRA target's base layer and adapters (first decoder layer), and the Float8 count."""
    out: dict = {"float8_linear": sum(1 for m in model.modules() if type(m).__name__ == "Float8Linear")}
    for name, module in model.named_modules():
        short = name.rsplit(".", 1)[-1]
        if short in TARGETS and ".layers.0." in name and hasattr(module, "base_layer"):
            out[short] = {"base_layer": type(module.base_layer).__name__,
                          "lora_A": type(module.lora_A["default"]).__name__,
                          "lora_B": type(module.lora_B["default"]).__name__}
        elif short in TARGETS and ".layers.0." in name and short not in out:
            out[short] = {"module": type(module).__name__}
    return out


def run_case(case: dict) -> dict:
    import torch
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model

    model = _model()
    lora = LoraConfig(r=case["r"], lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0)
    result: dict = {}
    try:
        if case["order"] == "fp8_then_peft":
            from torchao.float8 import convert_to_float8_training

            convert_to_float8_training(model)
            result["after_convert"] = _layers(model)
        model = get_peft_model(model, lora)
    except Exception as exc:  # noqa: BLE001
        return {**describe_exception(exc), "stage": "get_peft_model", **result}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    try:
        accelerator = Accelerator(mixed_precision="fp8" if case["order"] == "peft_then_prepare" else "no")
        model, optimizer = accelerator.prepare(model, optimizer)
    except Exception as exc:  # noqa: BLE001
        return {**describe_exception(exc), "stage": "prepare", **result}
    result["layers"] = _layers(model)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    result["trainable_outside_optimizer"] = sum(1 for p in trainable.values() if id(p) not in held)
    result["trainable_dtypes"] = sorted({str(p.dtype) for p in trainable.values()})
    result["trainable_kinds"] = sorted({n.split(".")[-2] for n in trainable})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(0, 320, (4, 32), generator=torch.Generator().manual_seed(0))
    try:
        loss = model(input_ids=ids, labels=ids).loss
        accelerator.backward(loss)
        optimizer.step()
    except Exception as exc:  # noqa: BLE001
        return {**describe_exception(exc), "stage": "train", **result}
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    result.update(outcome="ok", loss_finite=bool(torch.isfinite(loss).item()),
                  changed_only_trainable=changed == set(trainable), changed=len(changed), trainable=len(trainable))
    return result


def cases() -> list[dict]:
    all_gather_off = {"ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": "false"}
    return [{"order": order, "r": r, "env": env} for order, env in (("peft_then_prepare", {}), ("fp8_then_peft", {}),
                                                                    ("peft_then_prepare", all_gather_off))
            for r in (8, 16)]


if __name__ == "__main__":
    main(cases(), run_case, ("accelerate", "transformers", "peft"))
