"""Each entry path run for real in child processes on the tiny model (torchao emulate=True on CPU).

The default tensorwise recipe through every entry is covered by tests/test_repro.py; here the other torchao
recipes, the Trainer's recipe override, a 2-process `accelerate launch` and the bf16 baseline (torchrun's
2 processes are checked there too).
"""

from __future__ import annotations

import math

import pytest
from session_cache import computed_once

from fp8doctor.runs.pool import run_specs
from fp8doctor.runs.spec import RunSpec
from fp8doctor.runs.verdicts import classify

SPECS = {
    "native": RunSpec(entry="native", recipe="rowwise", steps=5),
    "accelerator": RunSpec(entry="accelerator", recipe="rowwise", steps=5),
    "trainer": RunSpec(entry="trainer", recipe="rowwise", steps=5),
    "launch2": RunSpec(entry="launch", nproc=2, steps=4),
    "baseline": RunSpec(backend="none", recipe="bf16", entry="native", steps=5),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    def compute():
        return dict(zip(SPECS, run_specs(list(SPECS.values()), workers=2), strict=True))

    return computed_once(tmp_path_factory, "fp8doctor-entries", compute)


def falling(losses):
    assert losses and all(isinstance(v, float) and math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", ["native", "accelerator", "trainer", "launch2"])
def test_fp8_entry_trains_with_fp8_active(results, name):
    r = results[name]
    assert r["outcome"] == "finished", (r.get("error"), r.get("stderr_tail"))
    assert classify(r).name == "fp8-active"
    assert len(r["eligible_layers"]) == 13  # tiny Llama: all but the first and last Linear
    assert r["fp8_layers"] == r["eligible_layers"]
    assert r["forwards"]["fp8_module_forwards"] == 13 * len(r["losses"])
    assert r["emulated"] is True and any("emulate=True" in n for n in r["notes"])
    assert len(r["losses"]) == r["spec"]["steps"]
    falling(r["losses"])
    if name != "native":
        acc = r["accelerator"]
        assert (acc["mixed_precision"], acc["fp8_enabled"], acc["fp8_backend"]) == ("fp8", True, "AO")


def test_native_and_accelerate_convert_the_same_layers(results):
    # Same filter: the converted layer set must not depend on the entry path.
    assert results["native"]["fp8_layers"] == results["accelerator"]["fp8_layers"]
    assert "model.layers.0.self_attn.q_proj" not in results["native"]["fp8_layers"]
    assert "lm_head" not in results["native"]["fp8_layers"]


def test_trainer_gets_recipe_through_build_accelerator_args(results):
    r = results["trainer"]
    assert r["entry_env"] == {"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": "AO"}
    assert r["training_args"] == {"bf16": False, "mixed_precision": "fp8"}
    assert any("_build_accelerator_args" in n for n in r["notes"])


def test_two_process_launch_is_really_distributed(results):
    r = results["launch2"]
    assert r["launcher"]["processes_started"] == 2 and r["launcher"]["returncode"] == 0
    assert [x["rank"] for x in r["ranks"]] == [0, 1]
    for rank in r["ranks"]:
        assert rank["outcome"] == "finished" and rank["fp8_active"]
        assert rank["accelerator"]["distributed_type"] == "MULTI_CPU"
        assert rank["accelerator"]["num_processes"] == 2


def test_launch_reads_mixed_precision_from_the_config(results):
    r = results["launch2"]
    assert r["accelerate_config"]["mixed_precision"] == "fp8"
    assert r["accelerate_config"]["fp8_config"] == {"backend": "AO"}
    assert r["launcher"]["command"].startswith("ACCELERATE_USE_CPU=true accelerate launch --config_file")
    assert r["ranks"][0]["launcher_env"]["ACCELERATE_MIXED_PRECISION"] == "fp8"


def test_a_run_names_the_trainable_parameters_its_optimizer_does_not_hold(results):
    for name in ("native", "accelerator", "trainer", "baseline"):  # an explicit torchao recipe: all held
        assert results[name]["outside_optimizer"] == [], name
    # `accelerate launch` with no recipe handler: Accelerate's own AORecipeKwargs() sets torchao's
    # enable_fsdp_float8_all_gather=True, whose conversion gives every FP8 weight a new Parameter after the
    # optimizer was built, so the optimizer steps none of them.
    for rank in results["launch2"]["ranks"]:
        assert len(rank["fp8_layers"]) == 13
        assert rank["outside_optimizer"] == [f"{layer}.weight" for layer in rank["fp8_layers"]]


def test_bf16_baseline(results):
    r = results["baseline"]
    assert r["outcome"] == "finished" and classify(r).name == "bf16-baseline"
    assert r["fp8_layers"] == [] and r["forwards"]["fp8_module_forwards"] == 0
    falling(r["losses"])
