"""Tiny Llama and seeded synthetic token data shared by the watch test scripts (runs on CPU in seconds)."""

from __future__ import annotations

import torch


def build_model(seed: int = 0) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, vocab_size=256,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


def token_rows(seed: int = 0, rows: int = 32, seq_len: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (rows, seq_len), generator=gen)
