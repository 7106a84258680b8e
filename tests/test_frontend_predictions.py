"""fp8doctor.knowledge.frontends against the frontend lab cells (lab/cells_frontends.yaml): for every recorded TRL
case, the config's bf16 and mixed_precision after `__post_init__`, ACCELERATE_MIXED_PRECISION after it, what the
Trainer passed to the Accelerator, the state's precision and whether FP8 layers trained are what the doctor
predicts. tests/test_generation_predictions.py runs the same check for each case (every probe has a prediction)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fp8doctor.knowledge.frontends import TRL, overrides_fp8, predict_trl, trl_bf16
from fp8doctor.knowledge.predict import MP_VAR

OBSERVATIONS = Path(__file__).resolve().parents[1] / "lab" / "observations"


def _trl_cases() -> list[Any]:
    out = []
    for path in sorted(OBSERVATIONS.glob("*.json")):
        rec = json.loads(path.read_text())
        for i, case in enumerate(rec.get("probes", {}).get("trl_configs", [])):
            inp = case["inputs"]
            out.append(pytest.param(rec, case, id=f"{rec['cell']}::{i}:{inp['config']},bf16={inp['bf16']},"
                                                  f"{inp['env_name']}{',trainer' if inp.get('trainer') else ''}"))
    return out


def check_trl_configs(rec: dict[str, Any], case: dict[str, Any]) -> None:
    inp = case["inputs"]
    predicted = predict_trl(rec["versions"], bf16=inp["bf16"], env=inp["env"], trainer=bool(inp.get("trainer")))
    assert predicted["outcome"] == case["outcome"] == "ok", (predicted, case.get("message"))
    assert case["config"] == predicted["config"]
    assert case["env_after_config"].get(MP_VAR) == predicted["env_after_config"].get(MP_VAR)
    if inp.get("trainer"):
        [call] = case["accelerator_calls"]
        assert call["received"]["mixed_precision"] == (predicted["passes"]["mixed_precision"] or "<not passed>")
        assert case["mixed_precision"] == predicted["mixed_precision"]
        assert bool(case["fp8_layers"]) == predicted["fp8"]


TRL_CASES = _trl_cases()


def test_trl_cells_recorded() -> None:
    cells = {c.values[0]["cell"] for c in TRL_CASES}
    assert {"trl0.18-tf4.57-ao", "trl0.19-tf4.57-ao", "trl1.16-tf5.24-ao"} <= cells
    assert any(c.values[1].get("fp8_layers") for c in TRL_CASES), "no TRL case trained FP8 layers"


@pytest.mark.parametrize(("rec", "case"), TRL_CASES)
def test_trl_prediction_equals_observation(rec: dict[str, Any], case: dict[str, Any]) -> None:
    check_trl_configs(rec, case)


def test_trl_release_boundary() -> None:
    assert trl_bf16("0.18.0", None) is False and trl_bf16("0.19.1", None) is True
    assert trl_bf16("1.16.0", None, fp16=True) is False and trl_bf16("1.16.0", False) is False
    assert overrides_fp8(TRL, "0.19.0") and not overrides_fp8(TRL, "0.18.2") and overrides_fp8(TRL, None) is None


def test_frontends_doc_is_current() -> None:
    import subprocess
    import sys

    root = OBSERVATIONS.parents[1]
    proc = subprocess.run([sys.executable, str(root / "lab" / "frontends_table.py"), "--check"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def _peft_cases() -> list[Any]:
    out = []
    for path in sorted(OBSERVATIONS.glob("*.json")):
        rec = json.loads(path.read_text())
        for i, case in enumerate(rec.get("probes", {}).get("peft_fp8", [])):
            inp = case["inputs"]
            out.append(pytest.param(rec, case, id=f"{rec['cell']}::{i}:{inp['order']},r={inp['r']}"))
    return out


def check_peft_fp8(rec: dict[str, Any], case: dict[str, Any]) -> None:
    """Outcome; for a LoRA target the class of its base layer (the model's first Linear, layer 0's q_proj, is the
    one Accelerate's filter skips) and of its adapters; whether the optimizer step changed the trainable ones."""
    from fp8doctor.knowledge.frontends import predict_peft

    inp = case["inputs"]
    predicted = predict_peft(rec["versions"], order=inp["order"], r=inp["r"], env=inp["env"])
    assert predicted["outcome"] == case["outcome"], (predicted, case.get("message"))
    if case["outcome"] == "raised":
        assert {k: case[k] for k in ("type", "message", "stage")} == {
            k: predicted[k] for k in ("type", "message", "stage")}
        return
    for target in ("q_proj", "v_proj", "down_proj"):
        layer = case["layers"][target]
        base_fp8 = predicted["first_linear_fp8"] if target == "q_proj" else predicted["base_fp8"]
        assert layer["base_layer"] == ("Float8Linear" if base_fp8 else "Linear"), (target, layer)
        want = "Float8Linear" if predicted["adapters_fp8"] else "Linear"
        assert layer["lora_A"] == layer["lora_B"] == want, (target, layer)
    assert case["changed_only_trainable"] is predicted["adapters_train"]
    if "trainable_outside_optimizer" in case:  # recorded from the all-gather cases on
        assert (case["trainable_outside_optimizer"] == 0) is predicted["adapters_train"]
    assert case["trainable_dtypes"] == ["torch.float32"] and case["loss_finite"]


PEFT_CASES = _peft_cases()


def test_peft_cells_recorded() -> None:
    assert {c.values[0]["cell"] for c in PEFT_CASES} >= {"peft0.18-tf5.24-ao", "peft0.19-tf5.24-ao",
                                                         "peft0.20-tf5.24-ao", "peft0.21-tf5.24-ao",
                                                         "peft0.21-acc1.12-tf4.57-ao"}


@pytest.mark.parametrize(("rec", "case"), PEFT_CASES)
def test_peft_prediction_equals_observation(rec: dict[str, Any], case: dict[str, Any]) -> None:
    check_peft_fp8(rec, case)


def check_axolotl_config(rec: dict[str, Any], case: dict[str, Any]) -> None:
    """The validated fp8, the variable prepare_optim_env leaves (an exported ACCELERATE_MIXED_PRECISION=fp8
    replaced), axolotl's FP8 warnings (each logged once), and on the CLI's path (`load_cfg`, which validates
    against this machine's GPU: none here) its refusal of fp8."""
    import sys

    from fp8doctor.knowledge.frontends import predict_axolotl

    probes = str(OBSERVATIONS.parents[0] / "probes")
    if probes not in sys.path:
        sys.path.insert(0, probes)
    import axolotl_config

    config = axolotl_config.PRECISIONS[case["inputs"]["precision"]]
    predicted = predict_axolotl(rec["versions"], config, case.get("gpu_fp8"))
    assert predicted["outcome"] == case["outcome"], case.get("message")
    if case["outcome"] == "raised":
        assert (case["type"], case["message"], case["stage"]) == (predicted["type"], predicted["message"],
                                                                  predicted["stage"])
        return
    if "validated" in case:
        assert case["validated"]["fp8"] == predicted["fp8"]
    assert case["normalized"]["fp8"] == predicted["fp8"]
    assert case["env_after"].get(MP_VAR) == predicted["mixed_precision_env"]
    assert [w for w in case["warnings"] if "FP8" in w or "fp8" in w.lower()] == predicted["warnings"]


def _axolotl_cases() -> list[Any]:
    out = []
    for path in sorted(OBSERVATIONS.glob("*.json")):
        rec = json.loads(path.read_text())
        for i, case in enumerate(rec.get("probes", {}).get("axolotl_config", [])):
            inp = case["inputs"]
            out.append(pytest.param(rec, case, id=f"{rec['cell']}::{i}:{inp['precision']},{inp.get('via', 'validate')}"
                                                  f"{',fp8 exported' if inp['env'] else ''}"))
    return out


@pytest.mark.parametrize(("rec", "case"), _axolotl_cases())
def test_axolotl_prediction_equals_observation(rec: dict[str, Any], case: dict[str, Any]) -> None:
    check_axolotl_config(rec, case)


def check_axolotl_optimizer(rec: dict[str, Any], case: dict[str, Any]) -> None:
    """axolotl's own Accelerator arguments (no FSDP): the all-gather its Float8LinearConfig carries is the config key
    (unset: None), and whether the FP8 weights left the optimizer (and did not train) is the engine's prediction."""
    from fp8doctor.knowledge.frontends import AXOLOTL_ALL_GATHER_KEY, axolotl_fp8_weights_outside

    value = case["inputs"]["all_gather"]
    predicted = axolotl_fp8_weights_outside(rec["versions"], {"fp8": True, AXOLOTL_ALL_GATHER_KEY: value})
    assert case["outcome"] == "ok" and case["mixed_precision"] == "fp8" and case["fp8_layers"] == 4
    assert case["handler_config"]["enable_fsdp_float8_all_gather"] == value
    outside = case["fp8_weights_outside_optimizer"]
    assert len(outside) == (case["fp8_layers"] if predicted else 0), (predicted, outside)
    assert case["outside_changed"] == [] and case["held_changed"] == case["held_by_optimizer"] - len(outside)


def _axolotl_optimizer_cases() -> list[Any]:
    return [pytest.param(rec, case, id=f"{rec['cell']}::all_gather={case['inputs']['all_gather']}")
            for rec in (json.loads(p.read_text()) for p in sorted(OBSERVATIONS.glob("*.json")))
            for case in rec.get("probes", {}).get("axolotl_optimizer", [])]


AXOLOTL_OPTIMIZER_CASES = _axolotl_optimizer_cases()


def test_axolotl_optimizer_cases_recorded() -> None:
    assert {c.values[1]["inputs"]["all_gather"] for c in AXOLOTL_OPTIMIZER_CASES} == {None, False, True}


@pytest.mark.parametrize(("rec", "case"), AXOLOTL_OPTIMIZER_CASES)
def test_axolotl_optimizer_prediction_equals_observation(rec: dict[str, Any], case: dict[str, Any]) -> None:
    check_axolotl_optimizer(rec, case)
