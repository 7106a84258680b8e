"""The doctor's prediction for every recorded lab case equals what the real release did (lab/observations/*.json).

Each test id names the cell, the probe and the case. A probe without a prediction here fails: the doctor must
either predict a recorded outcome or say, through `outcome: unknown`, that it makes no claim (counted below).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fp8doctor.knowledge import fp8_config_keys
from fp8doctor.knowledge.engine import Setup, Stack, launch_env, predict
from fp8doctor.knowledge.predict import ALL_GATHER_VAR, MP_VAR, predict_env_reads

ROOT = Path(__file__).resolve().parents[1]
OBSERVATIONS = ROOT / "lab" / "observations"


def _records() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(OBSERVATIONS.glob("*.json"))]


def _case_id(probe: str, index: int, inputs: dict[str, Any]) -> str:
    env = ",".join(f"{k.removeprefix('ACCELERATE_')}={v!r}" for k, v in sorted(inputs.get("env", {}).items()))
    rest = ",".join(f"{k}={v}" for k, v in sorted(inputs.items()) if k != "env" and v is not None)
    return f"{probe}[{index}]({rest};{env})"


# Probes whose recorded cases another test holds against their own knowledge module, layer by layer.
HELD_ELSEWHERE = {"ao_filter": "tests/test_inspect_knowledge.py (knowledge/shapes.py)",
                  "eval_fp8": "tests/test_inspect_eval.py (knowledge/evaluation.py)",
                  "optimizer_params": "tests/test_optimizer_params.py (knowledge/optimizer_params.py)"}


def _cases() -> list[Any]:
    params = []
    for rec in _records():
        if rec.get("unresolvable"):
            continue
        for probe, cases in sorted(rec.get("probes", {}).items()):
            if probe in HELD_ELSEWHERE:
                continue
            for i, case in enumerate(cases):
                params.append(pytest.param(rec, probe, case, id=f"{rec['cell']}::{_case_id(probe, i, case['inputs'])}"))
    return params


CASES = _cases()


def _core(outcome: dict[str, Any]) -> dict[str, Any]:
    """The part of an outcome the doctor predicts: raised (type, message, stage, the precision when prepare() raised)
    or ok (precision, FP8 or not)."""
    kind = outcome.get("outcome")
    if kind == "raised":
        # a raise in prepare() comes after the state was set: its mixed precision is recorded and predicted too
        return {"outcome": kind, "type": outcome["type"], "message": outcome["message"], "stage": outcome.get("stage"),
                "mixed_precision": outcome.get("mixed_precision")}
    if kind == "ok":
        fp8 = outcome["fp8"] if "fp8" in outcome else bool(outcome.get("fp8_layers"))
        return {"outcome": kind, "mixed_precision": outcome.get("mixed_precision"), "fp8": fp8}
    return {"outcome": kind, "stage": outcome.get("stage")}


def check_accelerator(rec: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    i = case["inputs"]
    return predict(Stack.of(rec["versions"]), Setup(mp_arg=i["mp_arg"], env=i["env"], handler=i["handler"]))


def _trainer_observed(case: dict[str, Any]) -> dict[str, Any]:
    calls = case.get("accelerator_calls") or []
    if calls:
        got = calls[0]["received"]
        case = {**case, "passes_mp": got["mixed_precision"], "passes_handlers": got["kwargs_handlers"]}
    return case


def _trainer_compare(predicted: dict[str, Any], case: dict[str, Any], *, layers: bool) -> None:
    passes = predicted["passes"]
    observed = _trainer_observed(case)
    if "passes_mp" in observed:
        assert observed["passes_mp"] == (passes["mixed_precision"] or "<not passed>")
        assert observed["passes_handlers"] == (passes["kwargs_handlers"] or "<not passed>")
    if "env_after_training_args" in case:
        assert case["env_after_training_args"].get(MP_VAR) == passes["env_after"]
    want = _core(predicted)
    got = _core(case)
    if not layers and got["outcome"] == "ok":
        got.pop("fp8"), want.pop("fp8")
    assert got == want


def check_training_args(rec: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    i = case["inputs"]
    return predict(Stack.of(rec["versions"]),
                   Setup(frontend="trainer", precision="bf16" if i["bf16"] else None, env=i["env"]))


def check_reference_patch(rec: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    i = case["inputs"]
    return predict(Stack.of(rec["versions"]), Setup(frontend="trainer", precision="bf16" if i["bf16"] else None,
                                                    env=i["env"], patch=i["form"]))


def check_env_reads(rec: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    v, i = rec["versions"], case["inputs"]
    return predict_env_reads(v["accelerate"], torchao=bool(v.get("torchao")), what=i["what"],
                             unchecked=i.get("unchecked"),
                             env=i.get("env", {}))


def _env_reads_core(outcome: dict[str, Any]) -> dict[str, Any]:
    keep = ("outcome", "type", "message", "with_env", "without_env", "fields_changed_by_env")
    core = {k: outcome[k] for k in keep if k in outcome}
    post = outcome.get("post_init")
    if "post_init" in outcome:
        core["post_init"] = None if post is None else {k: post.get(k) for k in ("outcome", "type", "message")}
    if isinstance(core.get("fields_changed_by_env"), dict):  # a changed Float8 config: whether, not its repr
        core["fields_changed_by_env"] = {k: ("changed" if k == "config" else v)
                                         for k, v in core["fields_changed_by_env"].items()}
    for side in ("with_env", "without_env"):
        if side in core:
            core[side] = {k: core[side].get(k) for k in ("outcome", "type", "message")}
    return core


def check_llamafactory(rec: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    i = case["inputs"]
    launch = yaml.safe_load(i["accelerate_config"]) if i.get("accelerate_config") else None
    keys = i["fp8_keys"]
    return predict(Stack.of(rec["versions"]),
                   Setup(frontend="llamafactory", precision="bf16" if keys.get("bf16") else None, lf_fp8=keys,
                         env=i["env"], launch_yaml=launch))


def _lf_core(outcome: dict[str, Any], launched: bool) -> dict[str, Any]:
    """ok: what it trained in; raised: where, and (for a plain llamafactory-cli run, whose exception is the
    library's own) the type and message."""
    if outcome.get("outcome") == "ok":
        return {"outcome": "ok", "trained_in": outcome.get("trained_in")}
    core = {"outcome": outcome.get("outcome"), "stage": outcome.get("stage")}
    if not launched:
        core.update(type=outcome.get("type"), message=outcome.get("message"))
    return core


def check_distributed(rec: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """knowledge/distributed.predict's fields; a DeepSpeed case left waiting on the lock of the lab's own op build
    (which outlived the probe's limit on a loaded machine) observed the lab, not a library: it predicts nothing."""
    from fp8doctor.knowledge.distributed import predict

    if case.get("deepspeed_op_build") != "ok" and case.get("hung_at") == ["torch/utils/file_baton.py:wait"]:
        return {"outcome": "hung", "hung_at": case["hung_at"]}
    return predict(rec["versions"]["accelerate"], case["inputs"])


def check_fp8_config_keys(rec: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """The recipe classes' fields, or per key of one backend's file what launch exports and which fields it reaches."""
    acc, i = rec["versions"]["accelerate"], case["inputs"]
    if i["what"] == "recipe_fields":
        fields = fp8_config_keys.recipe_fields(acc)
        return {"outcome": "unknown"} if fields is None else {"outcome": "ok", "fields": fields}
    refusal = fp8_config_keys.launch_refusal(acc)
    if refusal is not None and refusal["stage"] == "launch":
        return {"outcome": "raised", **refusal}
    return {"outcome": "ok", "keys": {key: fp8_config_keys.predict_key(acc, backend=i["backend"], key=key, value=value)
                                      for key, value in i["values"].items()}}


def _key_core(result: dict[str, Any]) -> dict[str, Any]:
    launch = result.get("launch")
    reaches = result.get("reaches")
    if isinstance(reaches, dict):
        reaches = {cls: (sorted(v) if isinstance(v, list) else "raised") for cls, v in reaches.items()}
    return {"outcome": result.get("outcome"), "exported": result.get("exported"), "reaches": reaches,
            "launch": None if launch is None else (launch["type"], launch["message"], launch.get("stage"))}


def _fp8_config_keys_core(outcome: dict[str, Any]) -> dict[str, Any]:
    if "fields" in outcome:
        return {"fields": {cls: sorted(names) for cls, names in outcome["fields"].items()}}
    if "keys" in outcome:
        return {"keys": {key: _key_core(result) for key, result in outcome["keys"].items()}}
    return _core(outcome)


PREDICTORS = {
    "distributed": check_distributed,
    "fp8_config_keys": check_fp8_config_keys,
    "llamafactory": check_llamafactory,
    "env_reads": check_env_reads,
    "accelerator": check_accelerator,
    "training_args": check_training_args,
    "reference_patch": check_reference_patch,
}


def test_observations_exist() -> None:
    assert CASES, "no lab observations recorded"


@pytest.mark.parametrize(("rec", "probe", "case"), CASES)
def test_prediction_equals_observation(rec: dict[str, Any], probe: str, case: dict[str, Any]) -> None:
    assert_prediction(rec, probe, case)


def assert_prediction(rec: dict[str, Any], probe: str, case: dict[str, Any]) -> None:
    """The doctor's prediction for one recorded (or live) case equals what happened."""
    if probe in ("trl_configs", "peft_fp8", "axolotl_config", "axolotl_optimizer"):
        from tests import test_frontend_predictions as frontends

        {"trl_configs": frontends.check_trl_configs, "peft_fp8": frontends.check_peft_fp8,
         "axolotl_config": frontends.check_axolotl_config,
         "axolotl_optimizer": frontends.check_axolotl_optimizer}[probe](rec, case)
        return
    if probe == "launch_config":
        check_launch(rec, case)
        return
    assert probe in PREDICTORS, f"the doctor has no prediction for probe {probe!r}"
    predicted = PREDICTORS[probe](rec, case)
    assert predicted["outcome"] != "unknown" or case.get("outcome") in ("crashed", "timeout"), (
        f"the doctor makes no claim here, but {rec['cell']} recorded {_core(case)}")
    if probe == "accelerator":
        assert _core(case) == _core(predicted)
    elif probe == "distributed":
        assert {k: case.get(k) for k in predicted} == predicted
    elif probe == "llamafactory":
        launched = bool(case["inputs"].get("accelerate_config"))
        assert _lf_core(case, launched) == _lf_core(predicted, launched)
    elif probe == "env_reads":
        assert _env_reads_core(case) == _env_reads_core(predicted)
    elif probe == "fp8_config_keys":
        assert _fp8_config_keys_core(case) == _fp8_config_keys_core(predicted)
    else:
        _trainer_compare(predicted, case, layers=probe == "reference_patch")


def _launch_configs() -> dict[str, Any]:
    """The config files the lab's launch probe wrote (its own table, so the two cannot drift apart)."""
    probes = str(ROOT / "lab" / "probes")
    if probes not in sys.path:
        sys.path.insert(0, probes)
    import launch_config

    return launch_config.CONFIGS


def check_launch(rec: dict[str, Any], case: dict[str, Any]) -> None:
    """`accelerate launch` of a config file: refused with the line the engine predicts, or launched with the
    variables and the Accelerator outcome it predicts (a config file applies only through `accelerate launch`,
    which ignores ACCELERATE_CONFIG_FILE)."""
    i = case["inputs"]
    config = _launch_configs()[i["config"]]
    applies = i["how"] == "launch --config_file" or (i["how"] == "launch" and i.get("where") == "default_location")
    predicted = predict(Stack.of(rec["versions"]), Setup(env=i.get("env", {}), launch_yaml=config if applies else None))
    if predicted.get("stage") == "launch":
        assert case["outcome"] == "rejected" and case["error_line"] == predicted["error_line"], case
        return
    assert case["outcome"] == "launched", case
    seen = case["launched"]["accelerate_env"]
    assert seen.get(MP_VAR) in ((predicted["reaches"],) if applies else (None, "no"))
    if applies and predicted["outcome"] != "unknown":
        backend = (config.get("fp8_config") or {}).get("backend")
        assert seen.get("ACCELERATE_FP8_BACKEND") == (str(backend) if backend else None)
        # the all-gather flag launch exports (a config key, or its own default), which decides optimizer_params
        assert seen.get(ALL_GATHER_VAR) == launch_env(config, rec["versions"]["accelerate"]).get(ALL_GATHER_VAR)
    got, want = _core(case["launched"]), _core(predicted)
    if want["outcome"] == "raised":  # the launched script records no stage
        got["stage"] = want["stage"] = None
    assert got == want


def core_of(probe: str, case: dict[str, Any]) -> dict[str, Any]:
    """The part of a recorded outcome that a re-probe must reproduce, per probe."""
    if probe == "env_reads":
        return _env_reads_core(case)
    if probe == "fp8_config_keys":
        return _fp8_config_keys_core(case)
    if probe == "llamafactory":
        return _lf_core(case, bool(case["inputs"].get("accelerate_config")))
    if probe == "launch_config":
        return {"outcome": case["outcome"], "error_line": case.get("error_line"),
                "launched": _core(case["launched"]) if case.get("launched") else None}
    core = _core(case)
    if probe in ("training_args", "reference_patch"):
        calls = case.get("accelerator_calls") or []
        core["passes"] = calls[0]["received"] if calls else None
    return core


def test_generation_table_is_current() -> None:
    """docs/generations.md is exactly what lab/table.py renders from the committed observations."""
    proc = subprocess.run([sys.executable, str(ROOT / "lab" / "table.py"), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
