"""TRL: what SFTConfig, DPOConfig and GRPOConfig do with bf16, and what SFTTrainer hands to the Accelerator.

Config cases: each config class built with bf16 unset or bf16=False (use_cpu=True) x ACCELERATE_MIXED_PRECISION
{unset, fp8}: the config's bf16/fp16/mixed_precision after `__post_init__` and the ACCELERATE_* variables before and
after. Trainer cases: SFTTrainer on a tiny Llama (hidden 64, two layers) with a byte-level BPE tokenizer, both built
here (nothing downloaded), a 16-row text dataset in batches of 8 (GRPOConfig wants a multiple of its 8
generations), `Accelerator.__init__` wrapped to record what it receives (the real call goes on), then one optimizer
step; recorded: the state's mixed precision and FP8 backend, and the FP8 layers of the trained model. torchao runs
without emulation (torch._scaled_mm on CPU: slow, but the model is tiny).

    python lab/probes/trl_configs.py   (in a cell with TRL)   -> {"cases": [...]}
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from _common import accelerate_env, describe_exception, fp8_layers, main, state_facts
from _trainer import spy_accelerator_init

CONFIGS = ("SFTConfig", "DPOConfig", "GRPOConfig")
EXPOSED = ("bf16", "fp16", "mixed_precision")
ENVS = {"env_none": {}, "env_fp8": {"ACCELERATE_MIXED_PRECISION": "fp8"}}


def _config(name: str, bf16: bool | None):
    import trl

    kwargs = {"output_dir": os.path.join(os.getcwd(), "out"), "report_to": "none", "use_cpu": True,
              "max_steps": 1, "per_device_train_batch_size": 8, "save_strategy": "no", "logging_strategy": "no",
              "disable_tqdm": True}
    if bf16 is not None:
        kwargs["bf16"] = bf16
    return getattr(trl, name)(**kwargs)


def _tiny(root: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from llamafactory import TOKEN_TEXT
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TOKEN_TEXT] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>")
    import torch

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=-(-len(fast) // 16) * 16, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=128, tie_word_embeddings=False, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, bos_token_id=None)
    return LlamaForCausalLM(config), fast


def run_case(case: dict) -> dict:
    result: dict = {"env_before": accelerate_env()}
    try:
        args = _config(case["config"], case["bf16"])
    except Exception as exc:  # noqa: BLE001
        return {**result, **describe_exception(exc), "stage": "config"}
    result["env_after_config"] = accelerate_env()
    result["config"] = {name: (str(getattr(args, name)) if hasattr(args, name) else "<absent>") for name in EXPOSED}
    if not case.get("trainer"):
        return {**result, "outcome": "ok"}
    from datasets import Dataset
    from trl import SFTTrainer

    calls: list = []
    spy_accelerator_init(calls)
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = _tiny(Path(tmp))
        data = Dataset.from_dict({"text": [f"hello world {i} the quick brown fox" for i in range(16)]})
        try:
            trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
        except Exception as exc:  # noqa: BLE001
            return {**result, **describe_exception(exc), "stage": "SFTTrainer", "accelerator_calls": calls}
        result["accelerator_calls"] = calls
        result["env_after_trainer"] = accelerate_env()
        result.update(state_facts(trainer.accelerator))
        try:
            trainer.train()
        except Exception as exc:  # noqa: BLE001
            return {**result, **describe_exception(exc), "stage": "train"}
        result["fp8_layers"] = fp8_layers(trainer.model_wrapped if trainer.model_wrapped is not None
                                          else trainer.model)
    return {**result, "outcome": "ok"}


def cases() -> list[dict]:
    out = []
    for env_name, env in ENVS.items():
        for name in CONFIGS:
            for bf16 in (None, False):
                out.append({"config": name, "bf16": bf16, "env_name": env_name, "env": env})
        for bf16 in (None, False):
            out.append({"config": "SFTConfig", "bf16": bf16, "env_name": env_name, "env": env, "trainer": True})
    return out


if __name__ == "__main__":
    main(cases(), run_case, ("accelerate", "accelerate.utils", "transformers", "transformers.trainer"))
