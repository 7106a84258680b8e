"""Divergence from the bf16 baseline and the matrix's numerics check, on typed facts; the torchao tolerance held
against torchao's own SQNR function."""

from __future__ import annotations

import pytest
import torch

from fp8doctor.divergence import judge
from fp8doctor.findings import Level
from fp8doctor.knowledge.divergence import TE_FP8, TE_NVFP4, TORCHAO, TORCHAO_SQNR_DB, tolerance
from fp8doctor.knowledge.optimizer_params import SENTENCE
from fp8doctor.matrix.divergence import check_divergence, check_numerics, check_optimizer
from fp8doctor.runs.spec import TE_RECIPES, RunSpec

LOSSES = [5.60, 5.52, 5.44, 5.35]
GRADS = [1.30, 1.40, 1.60, 1.90]


def test_torchao_tolerance_is_its_20_db_sqnr_bound() -> None:
    from torchao.float8.float8_utils import compute_error

    torch.manual_seed(0)
    ref = torch.randn(4096)
    noise = torch.randn(4096)
    for rel, inside in ((0.099, True), (0.101, False)):
        x = ref + noise * (rel * ref.norm() / noise.norm())
        sqnr = float(compute_error(ref, x))
        assert (sqnr > TORCHAO_SQNR_DB) is inside, sqnr
        # the norm of the FP8-like tensor stays within the relative tolerance whenever the SQNR bound holds
        assert TORCHAO.allows(float(x.norm()), float(ref.norm())) or not inside
    assert TORCHAO.rtol == pytest.approx(0.1) and TORCHAO.atol == 0.0


def test_te_tolerances_follow_te_quantization_tols() -> None:
    assert (TE_FP8.rtol, TE_FP8.atol) == (0.125, 0.0675) and (TE_NVFP4.rtol, TE_NVFP4.atol) == (0.25, 0.125)
    assert {r: tolerance("te", r) for r in TE_RECIPES} == {r: TE_NVFP4 if r == "nvfp4" else TE_FP8 for r in TE_RECIPES}
    assert tolerance("TE") is TE_FP8 and tolerance("AO") is TORCHAO and tolerance("torchao", "rowwise") is TORCHAO
    # assert_close's rule: atol lets a small absolute difference pass that rtol alone would not
    assert TE_FP8.allows(0.16, 0.10) and not TORCHAO.allows(0.16, 0.10) and not TE_FP8.allows(0.19, 0.10)
    assert not TE_FP8.allows(float("nan"), 1.0) and not TE_FP8.allows(1.0, float("inf"))


@pytest.mark.parametrize(
    ("losses", "grads", "level", "needle"),
    [
        (LOSSES, GRADS, Level.OK, "grad norm max rel diff 0.00e+00"),
        (LOSSES, [g * 1.09 for g in GRADS], Level.OK, "grad norm max rel diff 9.00e-02"),
        (LOSSES, GRADS[:2] + [GRADS[2] * 1.2, GRADS[3]], Level.WARN, "outside the tolerance from step 3 (1.92 vs"),
        (LOSSES[:3] + [LOSSES[3] * 1.11], GRADS, Level.FAIL, "loss max rel diff 1.10e-01 at step 4 over 4 steps; "
                                                              "outside the tolerance from step 4"),
        (LOSSES[:1] + ["nan"] + LOSSES[2:], GRADS, Level.FAIL, "loss not finite at step 2 (nan) where bf16 was"),
        (LOSSES, GRADS[:3] + ["inf"], Level.FAIL, "grad norm not finite at step 4 (inf)"),
        (LOSSES, None, Level.OK, "grad norm not compared (this run recorded none)"),
    ],
)
def test_judge(losses, grads, level, needle) -> None:
    got, detail, _ = judge(losses, LOSSES, grads, GRADS, TORCHAO)
    assert got is level and needle in detail, detail
    assert "torchao test/float8/test_numerics_integration.py" in detail


def test_a_baseline_that_diverges_itself_stops_the_comparison() -> None:
    level, detail, details = judge(LOSSES, LOSSES[:2] + ["nan", 9.0], GRADS, GRADS, TORCHAO)
    assert level is Level.OK and details["loss"]["compared"] == 2 and "bf16 itself not finite at step 3" in detail


def _cell(**over) -> dict:
    r = {"spec": RunSpec(backend="te", recipe="nvfp4").to_dict(), "outcome": "finished", "losses": LOSSES,
         "grad_norms": GRADS}
    return {**r, **over}


def test_check_divergence_uses_the_cells_recipe_tolerance() -> None:
    base = {**_cell(), "spec": RunSpec(backend="none", recipe="bf16").to_dict()}
    shifted = [x * 1.2 for x in LOSSES]  # 20%: within NVFP4's rtol 0.25, outside TE FP8's 0.125
    assert check_divergence(_cell(losses=shifted), base).level is Level.OK
    fp8 = _cell(losses=shifted, spec=RunSpec(backend="te", recipe="mxfp8").to_dict())
    assert check_divergence(fp8, base).level is Level.FAIL
    assert check_divergence(_cell(), None).level is Level.SKIP
    assert check_divergence(_cell(), {**base, "outcome": "raised"}).detail == "baseline raised"


def test_a_run_whose_fp8_weights_are_outside_the_optimizer_fails() -> None:
    assert check_optimizer(_cell(outside_optimizer=[])).level is Level.OK
    assert check_optimizer(_cell()).level is Level.SKIP  # not recorded (DeepSpeed)
    frozen = _cell(fp8_layers=["m.a", "m.b"], outside_optimizer=["m.a.weight", "m.b.weight", "lm_head.bias"])
    v = check_optimizer(frozen)  # numerics identical to bf16, yet three parameters never train
    assert (v.level, v.value) == (Level.FAIL, 3)
    assert v.detail.startswith(f"{SENTENCE}: 3 trainable parameters (2 of them FP8 layers' weights, e.g. "
                               "m.a.weight) are not held by the optimizer, so they never train")
    v = check_optimizer(_cell(fp8_layers=["m.a"], outside_optimizer=["lm_head.bias"]))
    assert v.level is Level.FAIL and v.detail.startswith("1 trainable parameters (0 of them")
    base = {**_cell(), "spec": RunSpec(backend="none", recipe="bf16").to_dict()}
    assert check_divergence(frozen, base).level is Level.OK  # the numerics alone: the optimizer check owns it


ROW = {"samples": 1, "calls": 8, "sqnr_db_min": 28.0, "input_underflow_max": 0.0, "input_saturated_max": 0.0,
       "weight_underflow_max": 0.0, "weight_saturated_max": 0.0, "input_amax_max": 3.0, "weight_amax_max": 0.1}


def test_check_numerics_names_layers_below_the_threshold_with_the_config() -> None:
    layers = {"a": ROW, "b": {**ROW, "sqnr_db_min": 4.5, "input_underflow_max": 0.97},
              "c": {"error": "AssertionError: no", "calls": 8}}
    v = check_numerics(_cell(numerics={"every": 20, "layers": layers}))
    assert v.level is Level.WARN and v.value == pytest.approx(4.5)
    assert "2/3 FP8 layers sampled every 20 calls; min SQNR 4.5 dB (b); max input underflow 97.00% (b)" in v.detail
    assert "not sampled: AssertionError: no" in v.detail and "below 25 dB" in v.detail and "'b'" in v.detail
    assert check_numerics(_cell(numerics={"every": 20, "layers": {"a": ROW}})).level is Level.OK
    assert check_numerics(_cell()).level is Level.SKIP


def test_the_reports_matrix_table_names_every_column() -> None:
    from fp8doctor.matrix.render import HEADERS
    from fp8doctor.report.markdown import MATRIX_HEADERS

    assert len(MATRIX_HEADERS) == len(HEADERS)
    assert [h for h in HEADERS if "grad norm" in h or "SQNR" in h] == ["grad norm vs bf16", "min SQNR dB"]
    assert MATRIX_HEADERS[4:6] == ["max rel. grad-norm diff vs bf16", "min FP8 layer SQNR (dB)"]


def test_a_cell_with_an_underflowing_layer_shows_its_table_in_text_markdown_and_json() -> None:
    from fp8doctor.matrix import checks
    from fp8doctor.matrix.plan import Cell
    from fp8doctor.matrix.render import render
    from fp8doctor.matrix.run import MatrixResult, Row

    layers = {"model.layers.0.mlp.up_proj": ROW,
              "model.layers.1.mlp.down_proj": {**ROW, "sqnr_db_min": 3.2, "input_underflow_max": 0.9844}}
    spec = RunSpec(backend="torchao", recipe="tensorwise")
    r = {"spec": spec.to_dict(), "outcome": "finished", "losses": LOSSES, "grad_norms": GRADS,
         "numerics": {"every": 20, "layers": layers}}
    v = checks.check_cell(r, {**r, "spec": RunSpec(backend="none", recipe="bf16").to_dict()})
    m = MatrixResult([Row(Cell(spec, "fp8"), r, v, checks.cell_status(v))], wall_s=1.0, workers=1)
    text, md = render(m, "text"), render(m, "md")
    for out in (text, md):
        assert "torchao:tensorwise via accelerator: warn: 2/2 FP8 layers sampled every 20 calls; min SQNR 3.2 dB " \
               "(model.layers.1.mlp.down_proj); max input underflow 98.44% (model.layers.1.mlp.down_proj)" in out
        assert out.count("98.44%") == 3  # the numerics line, the layer's table row, the warning line
    assert "| model.layers.1.mlp.down_proj |" in md and "\nmodel.layers.1.mlp.down_proj " in text
    cell = __import__("json").loads(render(m, "json"))["cells"][0]
    assert cell["result"]["numerics"]["layers"]["model.layers.1.mlp.down_proj"]["input_underflow_max"] == 0.9844
    assert {x["check"]: x["level"] for x in cell["verdicts"]}["numerics"] == "warn"


def test_a_recorded_series_with_a_huge_integer_is_nan_not_a_crash() -> None:
    from fp8doctor.divergence import as_floats

    got = as_floats([1, "2.5", 10**400, None, "x"])
    assert got[:2] == [1.0, 2.5] and all(v != v for v in got[2:])
