"""Matrix planning on facts: which cells run, which are skipped with the doctor's reason, and selection errors."""

from __future__ import annotations

import pytest

from fp8doctor.matrix import plan
from fp8doctor.runs.spec import ENTRIES, TE_RECIPES, TORCHAO_RECIPES
from fp8doctor.system.errors import UsageError

CPU = {"gpus": [], "gpu_count": 0, "cc": None, "te_import_error": None,
       "installed": {"torchao": "0.18.0", "transformer-engine": None}}
H100 = {"gpus": [{"index": "0", "name": "H100", "cc": (9, 0)}], "gpu_count": 1, "cc": (9, 0),
        "te_import_error": None, "installed": {"torchao": "0.18.0", "transformer-engine": "2.9.0"}}


def test_cpu_plan_runs_torchao_and_skips_te_with_reasons() -> None:
    cells = plan.plan(CPU)
    fp8 = [c for c in cells if c.role == "fp8"]
    base = [c for c in cells if c.role == "baseline"]
    assert len(fp8) == (len(TE_RECIPES) + len(TORCHAO_RECIPES)) * len(ENTRIES)
    assert [c.spec.entry for c in base] == list(ENTRIES)  # one bf16 baseline per entry path and seed
    assert cells[: len(base)] == base  # baselines first
    assert all(c.skip is None for c in base if c.spec.entry != "deepspeed")
    for c in fp8:
        if c.spec.backend == "torchao" and c.spec.entry == "deepspeed":
            assert c.skip == "DeepSpeed is not installed; the deepspeed entry needs it (pip install deepspeed)."
        elif c.spec.backend == "torchao":
            assert c.skip is None, c.skip
        else:
            assert "Transformer Engine is not installed" in c.skip and "No CUDA GPU is visible" in c.skip
    assert {c.spec.nproc for c in fp8 if c.spec.entry in ("multiproc", "fsdp2", "deepspeed")} == {2}
    assert len({c.key for c in cells}) == len(cells)


def test_gpu_plan_uses_compute_capability() -> None:
    cells = plan.plan(H100, backends=["te"], entries=["native"])
    skips = {c.spec.recipe: c.skip for c in cells if c.role == "fp8"}
    assert skips["current"] is None and skips["block"] is None and skips["delayed_hybrid"] is None
    # TE 2.9.0 is installed in H100: the reasons are that release's own sentences.
    assert "10.0 or higher required for MXFP8" in skips["mxfp8"] and "10.0 or higher" in skips["nvfp4"]
    multi = plan.plan(H100, backends=["torchao"], recipes=["tensorwise"], entries=["multiproc"])
    assert "2 processes need 2 GPUs; 1 visible." in multi[-1].skip


def test_selection_and_baseline_of_unrunnable_entry() -> None:
    cells = plan.plan(CPU, backends=["te"], entries=["native"], steps=3, seeds=[0, 1])
    base = [c for c in cells if c.role == "baseline"]
    assert len(base) == 2 and all("baseline is not needed" in c.skip for c in base)
    cells = plan.plan(CPU, recipes=["rowwise"], entries=["trainer"], steps=4, size="small")
    assert [(c.spec.backend, c.spec.recipe, c.spec.steps, c.spec.size) for c in cells] == [
        ("none", "bf16", 4, "small"), ("torchao", "rowwise", 4, "small")]
    assert plan.baseline_spec(cells[1].spec).key() == cells[0].key


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"backends": ["msamp"]}, "unknown backend 'msamp'"),
        ({"backends": ["torchao"], "recipes": ["current"]}, "unknown recipe for the chosen backends 'current'"),
        ({"entries": ["megatron"]}, "unknown entry 'megatron'"),
        ({"steps": 1}, "--steps must be at least 2"),
        ({"size": "huge"}, "unknown size 'huge'"),
    ],
)
def test_bad_selection_is_a_usage_error(kwargs, needle) -> None:
    with pytest.raises(UsageError, match=needle.replace("(", r"\(")):
        plan.plan(CPU, **kwargs)


def test_union_of_selections_dedupes_and_keeps_needed_baselines() -> None:
    sels = [{"backends": ["te"], "entries": ["trainer"]}, {"backends": ["torchao"], "recipes": ["tensorwise"],
                                                           "entries": ["trainer", "native"]}]
    cells = plan.plan_union(CPU, sels, steps=4)
    keys = [c.key for c in cells]
    assert len(keys) == len(set(keys))
    base = {c.spec.entry: c for c in cells if c.role == "baseline"}
    assert set(base) == {"trainer", "native"} and all(c.skip is None for c in base.values())
    assert [c.role for c in cells][: len(base)] == ["baseline"] * len(base)
    assert all(c.spec.steps == 4 for c in cells)


def test_deepspeed_on_cpu_is_skipped_with_the_observed_reason_and_compile_is_an_axis() -> None:
    with_ds = {**CPU, "installed": {**CPU["installed"], "deepspeed": "0.19.8"}}
    cells = plan.plan(with_ds, backends=["torchao"], recipes=["tensorwise"], entries=["deepspeed", "fsdp2", "trainer"],
                      compile_axis=True)
    fp8 = {(c.spec.entry, c.spec.compile): c for c in cells if c.role == "fp8"}
    assert len(fp8) == 6
    ds = fp8[("deepspeed", False)].skip
    assert ds.startswith("The deepspeed entry needs GPUs: on CPU") and "AssertionError" in ds
    assert fp8[("fsdp2", True)].skip is None and fp8[("fsdp2", True)].spec.nproc == 2
    assert "TrainingArguments(torch_compile=True)" in fp8[("trainer", True)].skip
    assert fp8[("trainer", False)].skip is None
    base = {(c.spec.entry, c.spec.compile): c for c in cells if c.role == "baseline"}
    assert base[("fsdp2", True)].spec.compile and base[("fsdp2", True)].skip is None
    assert "baseline is not needed" in base[("deepspeed", False)].skip
    assert fp8[("fsdp2", False)].key != fp8[("fsdp2", True)].key
    # the tables tell the compiled cell from the eager one
    assert [fp8[("fsdp2", c)].spec.entry_label() for c in (False, True)] == ["fsdp2 x2", "fsdp2 x2 +compile"]
    # an eager cell keeps the key it had before the compile axis existed (--resume of older results files)
    from fp8doctor.runs.spec import RunSpec

    assert RunSpec(entry="native").key() == "torchao/tensorwise/native/s0-a4f9ea0b"
