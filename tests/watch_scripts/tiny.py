"""Tiny Llama, seeded synthetic token data and the training loop shared by the watch test scripts (runs on CPU in
seconds)."""

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


def train(accelerator, model: torch.nn.Module, steps: int, rows_seed: int = 0, rank_in_line: bool = True,
          lr: float = 1e-3) -> None:
    """AdamW over the prepared model on seeded rows; prints "LOSS [<rank>] <step> <repr>" per step (what `watch`
    reads from a user's log)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model, optimizer = accelerator.prepare(model, optimizer)
    rows = token_rows(seed=rows_seed)
    model.train()
    rank = f"{accelerator.process_index} " if rank_in_line else ""
    for step in range(steps):
        batch = rows[step * 4:(step + 1) * 4].to(accelerator.device)
        loss = model(input_ids=batch, labels=batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        print(f"LOSS {rank}{step} {loss.item()!r}", flush=True)
