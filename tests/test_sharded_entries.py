"""The fsdp2 entry and the compile axis, run for real on CPU (two gloo ranks; torchao emulate), judged by the
matrix's own checks."""

from __future__ import annotations

from fp8doctor.findings import Level
from fp8doctor.matrix import checks
from fp8doctor.runs.pool import run_spec
from fp8doctor.runs.spec import RunSpec


def test_fsdp2_trains_fp8_inside_the_sharded_units_on_both_ranks() -> None:
    r = run_spec(RunSpec(entry="fsdp2", nproc=2, steps=3, device="cpu", timeout_s=400))
    assert r["outcome"] == "finished", r.get("error")
    assert [x["rank"] for x in r["ranks"]] == [0, 1]
    for rank in r["ranks"]:
        wrapper = rank["wrapper"]
        # Accelerate keeps MULTI_CPU with an FSDP plugin on CPU; the entry sets the state as a GPU run has it
        assert (wrapper["plugin"], wrapper["distributed_type_seen"], wrapper["state_forced"]) == \
            ("fsdp2", "MULTI_CPU", True)
        assert {"model.layers.0", "model.layers.1", "<root>"} <= set(wrapper["wrapped_modules"])
        assert sorted(wrapper["fp8_layers_wrapped"]) == sorted(rank["fp8_layers"]) == sorted(rank["eligible_layers"])
        assert wrapper["float8_all_gather"] is True  # tensorwise under FSDP2 all-gathers in float8
        assert rank["accelerator"]["distributed_type"] == "FSDP" and rank["accelerator"]["fp8_backend"] == "AO"
    layers = checks.check_fp8_layers(r)
    assert layers.level is Level.OK and layers.detail.endswith("float8 all-gather) on each of 2 ranks"), layers
    assert checks.check_fp8_active(r).level is Level.OK


def test_compile_axis_runs_the_fp8_model_under_torch_compile() -> None:
    r = run_spec(RunSpec(entry="accelerator", steps=2, device="cpu", compile=True, timeout_s=500))
    assert r["outcome"] == "finished", r.get("error")
    assert r["compiled"] == {"backend": "aot_eager"} and r["spec"]["compile"] is True
    # the forward counter's hooks ran inside the compiled graph: every FP8 layer, every step
    assert r["forwards"]["fp8_module_forwards"] == 2 * len(r["fp8_layers"]) > 0
    assert checks.check_fp8_active(r).level is Level.OK
