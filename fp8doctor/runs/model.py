"""A small Llama-style causal LM built from a config in code, and seeded synthetic token data. Nothing downloads.

Sizes keep every hidden/intermediate dimension divisible by 16 so the middle Linear layers are FP8-eligible
under every backend's filter; "tiny" is for CPU tests, "small"/"medium" for GPUs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# name -> (hidden, intermediate, layers, heads, vocab, default seq, default batch)
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"hidden": 64, "intermediate": 128, "layers": 2, "heads": 4, "vocab": 256, "seq": 32, "batch": 4},
    "small": {"hidden": 512, "intermediate": 1408, "layers": 4, "heads": 8, "vocab": 4096, "seq": 256, "batch": 8},
    "medium": {"hidden": 1024, "intermediate": 2816, "layers": 8, "heads": 16, "vocab": 8192, "seq": 512, "batch": 8},
}


def size_params(size: str) -> dict[str, int]:
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; choose from {', '.join(MODEL_SIZES)}")
    return dict(MODEL_SIZES[size])


def build_config(size: str) -> Any:
    from transformers import LlamaConfig

    p = size_params(size)
    return LlamaConfig(
        vocab_size=p["vocab"],
        hidden_size=p["hidden"],
        intermediate_size=p["intermediate"],
        num_hidden_layers=p["layers"],
        num_attention_heads=p["heads"],
        num_key_value_heads=p["heads"],
        max_position_embeddings=max(p["seq"], 64) * 2,
        tie_word_embeddings=False,
        use_cache=False,
    )


def build_model(size: str, seed: int) -> Any:
    """A freshly initialised LlamaForCausalLM in fp32 (mixed precision is the run's business)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(build_config(size))
    model.train()
    return model


def synthetic_batches(size: str, seed: int, steps: int, batch: int | None = None, seq: int | None = None
                      ) -> Iterator[dict[str, Any]]:
    """`steps` batches of {"input_ids", "labels"} drawn from a small fixed pool of learnable sequences.

    Each sequence is an arithmetic progression modulo the vocabulary (random start, small random stride), so a
    model can learn it within a few steps and the loss falls; the pool is cycled so the same rows come back.
    """
    import torch

    p = size_params(size)
    batch = batch or p["batch"]
    seq = seq or p["seq"]
    gen = torch.Generator().manual_seed(10_000 + seed)
    pool_rows = batch * 2
    starts = torch.randint(0, p["vocab"], (pool_rows, 1), generator=gen)
    strides = torch.randint(1, 4, (pool_rows, 1), generator=gen)
    pool = (starts + strides * torch.arange(seq).unsqueeze(0)) % p["vocab"]
    for step in range(steps):
        idx = torch.arange(batch) + (step % 2) * batch
        ids = pool[idx].clone()
        yield {"input_ids": ids, "labels": ids.clone()}
