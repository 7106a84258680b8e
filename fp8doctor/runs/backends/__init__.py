"""FP8 backends for the run engine: torchao (runs on CPU with emulate=True), Transformer Engine (CUDA only), and
the bf16 baseline ("none"). Each module builds recipes from a RunSpec's recipe name; imports stay lazy."""

from __future__ import annotations

# Which fp8doctor.observe eligibility rule matches the backend's conversion filter.
ELIGIBILITY_RULE = {"torchao": "accelerate-ao", "te": "accelerate-te", "none": "accelerate-ao"}


def eligibility_rule(backend: str) -> str:
    return ELIGIBILITY_RULE[backend]
