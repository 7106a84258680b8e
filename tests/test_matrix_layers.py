"""FP8-layer checks on every rank and inside the sharding plugin's units: rules on hand-written results in the
engine's schema (the real fsdp2 run is in tests/test_sharded_entries.py)."""

from __future__ import annotations

import copy

from fp8doctor.findings import Level
from fp8doctor.matrix import checks
from fp8doctor.runs.spec import RunSpec

NAMES = [f"model.layers.{i}.mlp.up_proj" for i in range(4)]


def rank(n: int, **over) -> dict:
    r = {"rank": n, "outcome": "finished", "losses": [5.0, 4.9], "fp8_layers": list(NAMES),
         "eligible_layers": list(NAMES), "forwards": {"fp8_module_forwards": 8}, "fp8_active": True,
         "wrapper": {"plugin": "fsdp2", "wrapped_modules": ["<root>", "model.layers.0", "model.layers.1"],
                     "fp8_layers_wrapped": list(NAMES), "float8_all_gather": True}}
    r.update(over)
    return r


def sharded(*ranks: dict) -> dict:
    top = copy.deepcopy(ranks[0])
    top.update({"spec": RunSpec(entry="fsdp2", nproc=len(ranks), steps=2).to_dict(), "ranks": list(ranks)})
    return top


def test_every_rank_in_fp8_inside_the_units_passes_and_names_the_plugin() -> None:
    v = checks.check_fp8_layers(sharded(rank(0), rank(1)))
    assert v.level is Level.OK, v
    assert v.detail == ("4 FP8 layers / 4 eligible, all inside fsdp2 units (2 + root, float8 all-gather) "
                        "on each of 2 ranks")
    active = checks.check_fp8_active(sharded(rank(0), rank(1)))
    assert active.level is Level.OK and active.detail == "8 FP8 module forwards on each of 2 ranks"


def test_a_rank_missing_fp8_layers_fails_and_says_which_rank() -> None:
    v = checks.check_fp8_layers(sharded(rank(0), rank(1, fp8_layers=NAMES[:2])))
    assert v.level is Level.FAIL and v.detail.startswith("2 FP8 layers / 4 eligible") and "(rank 1)" in v.detail


def test_fp8_layer_outside_every_unit_fails() -> None:
    outside = rank(1, wrapper={"plugin": "fsdp2", "wrapped_modules": ["model.layers.0"],
                               "fp8_layers_wrapped": NAMES[:1]})
    v = checks.check_fp8_layers(sharded(rank(0), outside))
    assert v.level is Level.FAIL and "3 FP8 layers outside every fsdp2 unit" in v.detail and "(rank 1)" in v.detail
    unsharded = rank(1, wrapper={"plugin": "deepspeed-zero2", "wrapped_modules": [], "fp8_layers_wrapped": []})
    v = checks.check_fp8_layers(sharded(rank(0), unsharded))
    assert v.level is Level.FAIL and "no module sharded by deepspeed-zero2" in v.detail


def test_a_rank_without_fp8_forwards_fails() -> None:
    v = checks.check_fp8_active(sharded(rank(0), rank(1, fp8_active=False, forwards={"fp8_module_forwards": 0})))
    assert v.level is Level.FAIL and v.detail == "0 FP8 module forwards (rank 1)"


def test_single_process_result_is_unchanged() -> None:
    r = rank(0)
    r.pop("wrapper")
    assert checks.check_fp8_layers(r).detail == "4 FP8 layers / 4 eligible"
