"""The built-in model and synthetic data: sizes FP8-eligible, data seeded and learnable."""

from __future__ import annotations

import pytest

from fp8doctor.observe import eligible_linear_names, linear_layer_names
from fp8doctor.runs.model import MODEL_SIZES, build_model, synthetic_batches


@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
def test_sizes_are_divisible_by_16(size):
    p = MODEL_SIZES[size]
    assert all(p[k] % 16 == 0 for k in ("hidden", "intermediate", "vocab"))
    assert p["layers"] >= 2 and p["hidden"] % p["heads"] == 0


def test_tiny_model_has_eligible_middle_layers():
    model = build_model("tiny", 0)
    linears = linear_layer_names(model)
    eligible = eligible_linear_names(model, "accelerate-ao")
    assert len(linears) == 15 and len(eligible) == 13
    assert linears[0] not in eligible and linears[-1] not in eligible


def test_batches_are_seeded():
    a = [b["input_ids"] for b in synthetic_batches("tiny", 0, 3)]
    b = [b["input_ids"] for b in synthetic_batches("tiny", 0, 3)]
    c = [b["input_ids"] for b in synthetic_batches("tiny", 1, 3)]
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert not all((x == y).all() for x, y in zip(a, c, strict=True))
    batch = next(synthetic_batches("tiny", 0, 1))
    assert batch["input_ids"].shape == (MODEL_SIZES["tiny"]["batch"], MODEL_SIZES["tiny"]["seq"])
    assert (batch["labels"] == batch["input_ids"]).all()
    assert int(batch["input_ids"].max()) < MODEL_SIZES["tiny"]["vocab"]
