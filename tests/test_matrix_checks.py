"""Matrix checks are rules on result dicts: tested on hand-written results in the engine's schema."""

from __future__ import annotations

import math

import pytest

from fp8doctor.findings import Level
from fp8doctor.matrix import checks
from fp8doctor.runs.spec import RunSpec

LOSSES = [5.60, 5.52, 5.44, 5.35, 5.27, 5.20, 5.12, 5.05]
GRAD_NORMS = [1.3, 1.4, 1.6, 1.9, 1.8, 1.7, 1.6, 1.5]
NUMERICS = {"every": 20, "layers": {
    f"model.layers.{i}.mlp.up_proj": {"samples": 1, "calls": 8, "sqnr_db_min": 28.5 + i, "input_underflow_max": 1e-4,
                                      "input_saturated_max": 0.0, "weight_underflow_max": 0.0,
                                      "weight_saturated_max": 0.0, "input_amax_max": 3.6, "weight_amax_max": 0.08}
    for i in range(2)}}


def result(backend="torchao", recipe="tensorwise", entry="accelerator", losses=None, **over):
    spec = RunSpec(backend=backend, recipe=recipe, entry=entry,
                   mixed_precision="bf16" if backend == "none" else "fp8")
    names = [f"model.layers.{i}.mlp.up_proj" for i in range(4)]
    r = {
        "spec": spec.to_dict(),
        "outcome": "finished",
        "error": None,
        "losses": list(LOSSES if losses is None else losses),
        "step_times_s": [0.5, 0.05, 0.05, 0.06, 0.05, 0.05, 0.05, 0.05],
        "fp8_layers": [] if backend == "none" else names,
        "eligible_layers": names,
        "forwards": {"fp8_module_forwards": 0 if backend == "none" else 32},
        "fp8_active": backend != "none",
        "device": "cpu",
        "emulated": backend == "torchao",
        "timings_s": {"total": 4.2},
    }
    r.update(over)
    return r


CHECKPOINT = {"bytes": 9000, "missing": [], "missing_count": 0, "unexpected": [], "unexpected_count": 0,
              "compared": 12, "max_abs_diff": 0.0}


def test_checkpoint_check_reads_each_failure_of_the_round_trip() -> None:
    from fp8doctor.matrix.checkpoint import check_checkpoint

    def verdict(**over):
        return check_checkpoint({"checkpoint": {**CHECKPOINT, **over}})

    assert verdict().level is Level.OK and "9000 bytes" in verdict().detail
    assert check_checkpoint({}).level is Level.SKIP
    assert check_checkpoint({"checkpoint": {"skipped": "sharded"}}).detail == "sharded"
    v = check_checkpoint({"checkpoint": {"load_error": "UnpicklingError: Weights only load failed"}})
    assert v.level is Level.FAIL and v.detail.endswith("fails to load: UnpicklingError: Weights only load failed")
    assert "fails to save" in check_checkpoint({"checkpoint": {"save_error": "x"}}).detail
    v = verdict(missing=["lm_head.weight"], missing_count=1)
    assert v.level is Level.FAIL and v.value == 1 and "lm_head.weight" in v.detail
    v = verdict(max_abs_diff=0.5)
    assert v.level is Level.FAIL and v.value == 0.5
    v = verdict(unexpected=["h.0.mlp._extra_state"], unexpected_count=1)
    assert v.level is Level.WARN and v.value == 1 and "strict=False" in v.detail and "_extra_state" in v.detail
    ok = verdict()
    assert (ok.value, ok.detail) == (0, "saved (9000 bytes) and loaded strictly into the model without FP8, 12 "
                                        "weights identical")
    assert check_checkpoint({}).detail.startswith("not recorded (the round trip runs after training in the accel")
    assert verdict(max_abs_diff="nan").level is Level.FAIL and verdict(max_abs_diff=float("nan")).level is Level.FAIL
    assert "fails to compare" in check_checkpoint({"checkpoint": {"compare_error": "x"}}).detail
    assert verdict(compared=0).level is Level.WARN and verdict(max_abs_diff=None).level is Level.WARN
    # a resumed --out file is untrusted: wrong types read as absent, never a traceback
    odd = verdict(missing_count="abc", missing="lm_head", unexpected_count=[1], unexpected=[3, None])
    assert odd.level is Level.OK
    assert verdict(missing_count=2, missing="ab").detail.endswith("e.g. ")
    every = [verdict(), verdict(max_abs_diff=1.0), verdict(unexpected_count=1), check_checkpoint({}),
             check_checkpoint({"checkpoint": {"skipped": "x"}}), check_checkpoint({"checkpoint": {"load_error": "x"}})]
    assert {v.check for v in every} == {"checkpoint"}


def levels(verdicts):
    return {v.check: v.level for v in verdicts}


def test_healthy_cell_passes_every_check_with_numbers() -> None:
    base = result("none", "bf16", grad_norms=GRAD_NORMS)
    fp8 = result(losses=[x * 1.001 for x in LOSSES], step_times_s=[0.5] + [0.1] * 7,
                 grad_norms=[g * 1.02 for g in GRAD_NORMS], numerics=NUMERICS, outside_optimizer=[],
                 checkpoint=CHECKPOINT)
    native = result(entry="native", losses=[x * 1.001 for x in LOSSES])
    verdicts = checks.check_cell(fp8, base, native)
    assert [v.check for v in verdicts] == list(checks.CHECK_NAMES)
    assert all(v.level is Level.OK for v in verdicts), verdicts
    by = {v.check: v for v in verdicts}
    assert by["loss_vs_bf16"].value == pytest.approx(1e-3)
    assert "max rel diff 1.00e-03" in by["loss_vs_bf16"].detail
    assert by["fp8_layers"].detail == "4 FP8 layers / 4 eligible"
    assert by["native_agreement"].detail == "bit-identical to native"
    assert by["step_time_ratio"].value == pytest.approx(2.0)
    assert "informational on CPU" in by["step_time_ratio"].detail
    assert by["divergence"].value == pytest.approx(0.02)
    assert "grad norm max rel diff 2.00e-02" in by["divergence"].detail
    assert by["numerics"].value == pytest.approx(28.5)
    assert "2/2 FP8 layers sampled every 20 calls; min SQNR 28.5 dB (model.layers.0.mlp.up_proj)" in \
        by["numerics"].detail
    assert checks.cell_status(verdicts) == "pass"


def test_baseline_cell_gets_only_training_checks() -> None:
    verdicts = checks.check_cell(result("none", "bf16"))
    assert [v.check for v in verdicts] == ["finished", "loss_finite", "loss_falls"]


@pytest.mark.parametrize(
    ("over", "check", "needle"),
    [
        ({"outcome": "raised", "error": {"type": "ValueError", "message": "needs fp8", "where": "a.py:1"}},
         "finished", "raised ValueError: needs fp8 at a.py:1"),
        ({"outcome": "timed_out"}, "finished", "timed out after 180.0 s"),
        ({"outcome": "crashed", "error": {"signal": "SIGSEGV"}}, "finished", "crashed (SIGSEGV)"),
        ({"losses": LOSSES[:3] + ["nan"] + LOSSES[4:]}, "loss_finite", "not finite at step 4"),
        ({"losses": LOSSES[:5]}, "loss_finite", "5 losses recorded for 8 steps"),
        ({"losses": list(reversed(LOSSES))}, "loss_falls", "(+9.3%)"),
        ({"losses": [x * (1 + 0.1 * n) for n, x in enumerate(LOSSES)]}, "loss_vs_bf16",
         "max rel diff 7.00e-01 at step 8"),
        ({"fp8_layers": ["model.layers.0.mlp.up_proj"]}, "fp8_layers", "1 FP8 layers / 4 eligible"),
        ({"fp8_layers": [], "forwards": {"fp8_module_forwards": 0}, "fp8_active": False}, "fp8_active",
         "0 FP8 module forwards"),
    ],
)
def test_each_problem_fails_its_check(over, check, needle) -> None:
    verdicts = checks.check_cell(result(**over), result("none", "bf16"), result(entry="native"))
    by = {v.check: v for v in verdicts}
    assert by[check].level is Level.FAIL, by[check]
    assert needle in by[check].detail
    assert checks.cell_status(verdicts) == "fail"


def test_nonfinite_loss_on_another_rank_fails() -> None:
    rank1 = {"losses": [5.0, "inf"]}
    r = result(entry="multiproc", losses=[5.0, 4.9], ranks=[{"losses": [5.0, 4.9]}, rank1])
    r["spec"]["steps"] = 2
    v = checks.check_loss_finite(r)
    assert v.level is Level.FAIL and "(rank 1)" in v.detail


def test_native_agreement_exact_warn_or_fail() -> None:
    native = result(entry="native")
    assert checks.check_native_agreement(result(), native).detail == "bit-identical to native"
    close = checks.check_native_agreement(result(losses=[x * (1 + 1e-3) for x in LOSSES]), native)
    assert close.level is Level.WARN and "not bit-identical to native: max rel diff 1.00e-03" in close.detail
    far = checks.check_native_agreement(result(losses=[x * 1.1 for x in LOSSES]), native)
    assert far.level is Level.FAIL and "beyond the loss tolerance 0.08" in far.detail
    assert checks.check_native_agreement(result(entry="trainer"), native).level is Level.SKIP
    assert checks.check_native_agreement(native, native).level is Level.SKIP
    assert checks.check_native_agreement(result(), None).level is Level.SKIP


def test_step_time_is_a_warning_only_on_gpu_when_fp8_is_slower() -> None:
    base = result("none", "bf16", device="cuda:0")
    slow = result(device="cuda:0", step_times_s=[1.0] + [0.2] * 7)
    v = checks.check_step_time(slow, base)
    assert v.level is Level.WARN and "slower" in v.detail
    fast = result(device="cuda:0", step_times_s=[1.0] + [0.01] * 7)
    assert checks.check_step_time(fast, base).level is Level.OK
    assert checks.check_step_time(result(step_times_s=[1.0] + [0.2] * 7), result("none", "bf16")).level is Level.OK
    assert checks.cell_status(checks.check_cell(slow, base, result(entry="native"))) == "warn"


def test_skipped_and_missing_baseline() -> None:
    skipped = {"spec": RunSpec(backend="te", recipe="current").to_dict(), "outcome": "skipped",
               "skip_reason": "No CUDA GPU is visible"}
    verdicts = checks.check_cell(skipped)
    assert checks.cell_status(verdicts) == "skip" and verdicts[0].detail == "No CUDA GPU is visible"
    v = checks.check_vs_baseline(result(), result("none", "bf16", outcome="crashed"))
    assert v.level is Level.SKIP and "baseline crashed" in v.detail


def test_max_rel_diff_flags_nonfinite() -> None:
    worst, at = checks.max_rel_diff([1.0, math.nan, 1.0], [1.0, 1.0, 1.0])
    assert not math.isfinite(worst) and at == 2


def test_tolerances_cover_every_recipe() -> None:
    from fp8doctor.runs.spec import TE_RECIPES, TORCHAO_RECIPES

    for recipe in TORCHAO_RECIPES:
        assert ("torchao", recipe) in checks.LOSS_RTOL
    for recipe in TE_RECIPES:
        assert ("te", recipe) in checks.LOSS_RTOL


def test_known_cpu_limit_is_a_skip_with_the_measured_error_only_on_cpu() -> None:
    err = {"type": "RuntimeError", "message": "expected m1 and m2 to have the same dtype, but got: c10::BFloat16 != "
           "float", "where": "torchao/float8/float8_linear.py:197 in backward"}
    cpu = result(recipe="rowwise_with_gw_hp", outcome="raised", error=err, losses=[])
    verdicts = checks.check_cell(cpu)
    assert checks.cell_status(verdicts) == "skip"
    assert "known CPU limit: torchao's Float8Linear follows only the CUDA autocast state" in verdicts[0].detail
    assert "measured here: RuntimeError: expected m1 and m2" in verdicts[0].detail
    gpu = dict(cpu, device="cuda:0")
    assert checks.cell_status(checks.check_cell(gpu)) == "fail"
    other = result(recipe="rowwise", outcome="raised", error=err, losses=[])
    assert checks.cell_status(checks.check_cell(other)) == "fail"


def test_a_cell_that_raised_at_a_known_cpu_limit_is_counted_as_raised_in_every_summary() -> None:
    from fp8doctor.matrix.plan import Cell
    from fp8doctor.matrix.render import render_text, summary, table_rows, to_json_obj
    from fp8doctor.matrix.run import MatrixResult, Row

    err = {"type": "RuntimeError", "message": "expected m1 and m2 to have the same dtype, but got: c10::BFloat16 != "
           "float", "where": "torchao/float8/float8_linear.py:197 in backward"}
    raised = result(recipe="rowwise_with_gw_hp", outcome="raised", error=err, losses=[])
    fine = result()
    skipped = {"spec": RunSpec(backend="te", recipe="current").to_dict(), "outcome": "skipped",
               "skip_reason": "Transformer Engine is not installed.", "losses": []}
    rows = []
    for r in (raised, fine, skipped):
        spec = RunSpec(**{k: v for k, v in r["spec"].items() if k in ("backend", "recipe", "entry")})
        verdicts = checks.check_cell(r)
        rows.append(Row(Cell(spec, "fp8"), r, verdicts, checks.cell_status(verdicts)))
    assert [r.shown for r in rows] == ["raised", "pass", "skip"] and rows[0].status == "skip"
    m = MatrixResult(rows, wall_s=1.0, workers=1)
    assert "1 pass, 0 warn, 0 fail, 1 raised at a known CPU limit (not a failure), 1 skipped" in summary(m)
    assert m.exit_code() == 0  # a known CPU limit fails nothing
    table, notes = table_rows(m)
    assert table[0][2] == "raised [1]" and table[2][2] == "skip [2]" and len(notes) == 2
    assert "raised [1]" in render_text(m) and [c["shown"] for c in to_json_obj(m)["cells"]] == [
        "raised", "pass", "skip"]
