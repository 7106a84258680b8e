"""knowledge/optimizer_params.py held against every recorded case of the lab's `optimizer_params` probe: whether
the FP8 layers' weights leave the optimizer, per release and setup (lab/observations/*.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fp8doctor.knowledge.engine import Setup, Stack
from fp8doctor.knowledge.optimizer_params import OBSERVED_ACCELERATE, OBSERVED_TORCHAO, predict_optimizer
from fp8doctor.knowledge.versions import release

OBSERVATIONS = Path(__file__).resolve().parents[1] / "lab" / "observations"
PROBE = "optimizer_params"
HEAD = {"distributed_type": "NO", "mixed_precision": "fp8"}


def _records() -> list[dict[str, Any]]:
    out = []
    for path in sorted(OBSERVATIONS.glob("*.json")):
        rec = json.loads(path.read_text())
        if rec.get("probes", {}).get(PROBE):
            out.append(rec)
    return out


RECORDS = _records()
CASES = [pytest.param(rec, case, id=f"{rec['cell']}::{i}:{case['inputs']['setup']}:"
                      f"{json.dumps(case['inputs'].get('fp8_config') or case['inputs']['env'], sort_keys=True)}")
         for rec in RECORDS for i, case in enumerate(rec["probes"][PROBE])]


def setup_of(inputs: dict[str, Any]) -> Setup:
    """The engine's Setup for one probe case (the probe's docstring says what each setup runs)."""
    setup = inputs["setup"]
    if setup == "env":
        return Setup(env=inputs["env"])
    if setup == "launch":
        return Setup(launch_yaml={**HEAD, "fp8_config": inputs["fp8_config"]})
    if setup == "AORecipeKwargs()":
        return Setup(mp_arg="fp8", handler="AORecipeKwargs")
    assert setup == "AORecipeKwargs(config=Float8LinearConfig())", setup
    return Setup(mp_arg="fp8", handler="AORecipeKwargs", ao_config={})


def recorded_core(case: dict[str, Any]) -> dict[str, Any]:
    if case["outcome"] == "raised":
        return {"outcome": "raised", "type": case["type"], "message": case["message"], "stage": case["stage"]}
    if case["outcome"] != "ok":
        return {"outcome": case["outcome"], "stage": case.get("stage")}
    return {"outcome": "ok", "mixed_precision": case["mixed_precision"], "fp8": case["fp8_layers"] > 0,
            "weights_outside_optimizer": bool(case["fp8_weights_outside_optimizer"])}


def predicted_core(got: dict[str, Any]) -> dict[str, Any]:
    if got["outcome"] == "raised":
        return {k: got[k] for k in ("outcome", "type", "message", "stage")}
    if got["outcome"] != "ok":
        return {"outcome": got["outcome"], "stage": got.get("stage")}
    return {k: got[k] for k in ("outcome", "mixed_precision", "fp8", "weights_outside_optimizer")}


@pytest.mark.parametrize(("rec", "case"), CASES)
def test_prediction_matches_recorded_case(rec: dict[str, Any], case: dict[str, Any]) -> None:
    got = predict_optimizer(Stack.of(rec["versions"]), setup_of(case["inputs"]))
    assert predicted_core(got) == recorded_core(case)
    if case["outcome"] == "ok" and case["fp8_layers"]:
        flags = {c["enable_fsdp_float8_all_gather"] for c in case["layer_configs"]}
        assert flags == {got["all_gather"]}


TRAINED = [p for p in CASES if p.values[1]["outcome"] == "ok"]


@pytest.mark.parametrize(("rec", "case"), TRAINED)
def test_weights_outside_the_optimizer_never_change(rec: dict[str, Any], case: dict[str, Any]) -> None:
    """What the finding's sentence says: the weights the optimizer does not hold are unchanged after 2 steps,
    while every weight it holds changed."""
    assert case["outside_changed"] == []
    assert case["held_changed"] == case["trainable_params"] - len(case["fp8_weights_outside_optimizer"])


def test_observed_releases_are_the_recorded_ones() -> None:
    accelerate = {release(r["versions"]["accelerate"])[:2] for r in RECORDS}
    torchao = {release(r["versions"]["torchao"])[:2] for r in RECORDS}
    assert accelerate == set(OBSERVED_ACCELERATE)
    assert torchao == set(OBSERVED_TORCHAO)


def test_an_unobserved_release_is_said_unobserved() -> None:
    newest = max(OBSERVED_ACCELERATE)
    later = f"{newest[0]}.{newest[1] + 1}.0"
    rec = RECORDS[-1]
    got = predict_optimizer(Stack(accelerate=later, torchao=rec["versions"]["torchao"]), Setup(
        env={"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": "AO"}))
    assert got["outcome"] == "unobserved"
    ao = ".".join(map(str, (OBSERVED_TORCHAO[0][0], OBSERVED_TORCHAO[0][1] + 1, 0)))
    got = predict_optimizer(Stack(accelerate=rec["versions"]["accelerate"], torchao=ao), Setup())
    assert got["outcome"] == "unobserved"


def test_the_flag_the_conversion_gets_is_read_as_accelerate_reads_it() -> None:
    from fp8doctor.knowledge.optimizer_params import ALL_GATHER_VAR, all_gather

    assert all_gather("1.15.0", {}, None) is True  # Accelerate's own config, from 1.13
    assert all_gather("1.12.0", {}, None) is False  # no config before 1.13: torchao's default
    assert all_gather("1.15.0", {ALL_GATHER_VAR: "FALSE"}, None) is False
    assert all_gather("1.15.0", {ALL_GATHER_VAR: "Yes"}, None) is True
    assert all_gather("1.15.0", {}, {"enable_fsdp_float8_all_gather": False}) is False  # the user's own config
    assert all_gather("not-a-version", {}, None) is None


def test_observed_needs_both_releases_the_lab_ran() -> None:
    from fp8doctor.knowledge.optimizer_params import observed

    assert observed(Stack(accelerate="1.15.0", torchao="0.18.0"))
    assert not observed(Stack(accelerate="1.15.0", torchao="0.17.0"))
    assert not observed(Stack(accelerate="1.2.0", torchao="0.18.0"))


def test_the_launch_configs_key_decides_through_what_accelerate_launch_exports() -> None:
    stack = Stack(accelerate="1.15.0", torchao="0.18.0", transformers="5.24.0")
    off = predict_optimizer(stack, Setup(launch_yaml={**HEAD, "fp8_config": {
        "backend": "AO", "enable_fsdp_float8_all_gather": False}}))
    plain = predict_optimizer(stack, Setup(launch_yaml={**HEAD, "fp8_config": {"backend": "AO"}}))
    assert (off["weights_outside_optimizer"], plain["weights_outside_optimizer"]) == (False, True)


def test_the_optimizer_fix_keeps_the_users_fp8_config_and_says_why() -> None:
    from fp8doctor.knowledge.command_forms import parse
    from fp8doctor.knowledge.fixes import optimizer_fix
    from fp8doctor.knowledge.optimizer_params import ALL_GATHER_VAR, SENTENCE

    form = parse(["accelerate", "launch", "--config_file", "acc.yaml", "train.py"])
    fix = optimizer_fix(form, "acc.yaml", {"backend": "AO", "pad_inner_dim": True})
    assert fix.title.startswith(SENTENCE) and fix.edits == {"acc.yaml": {"fp8_config": {
        "backend": "AO", "pad_inner_dim": True, "enable_fsdp_float8_all_gather": False}}}
    assert optimizer_fix(form, "acc.yaml").edits["acc.yaml"]["fp8_config"] == {
        "backend": "AO", "enable_fsdp_float8_all_gather": False}
    bare = optimizer_fix(parse(["python", "train.py"]), None)
    assert bare.title.startswith(SENTENCE) and bare.env == {ALL_GATHER_VAR: "false"} and not bare.edits


def test_every_false_ao_variable_is_a_changed_field() -> None:
    from fp8doctor.knowledge.predict import recipe_fields_from_env

    env = {"ACCELERATE_FP8_PAD_INNER_DIM": "true", "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": "false"}
    got = recipe_fields_from_env("1.15.0", "AORecipeKwargs", env)
    assert got is not None and "enable_fsdp_float8_all_gather" in got and "pad_inner_dim" not in got


def test_a_written_config_keeps_the_order_a_user_reads() -> None:
    from fp8doctor.knowledge.fixes import ACCELERATE_YAML, FixFile, accelerate_yaml

    text = FixFile(ACCELERATE_YAML, accelerate_yaml("AO")).text()
    keys = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith(" ")]
    assert keys == list(accelerate_yaml("AO"))


def test_launch_exports_its_own_all_gather_default_over_the_shell() -> None:
    """`accelerate launch` with fp8 exports the flag itself (its option's default, lab launch_config probe), so a
    shell's false does not reach the script through a config without the key; the key does."""
    from fp8doctor.knowledge.engine import Setup, Stack
    from fp8doctor.knowledge.optimizer_params import ALL_GATHER, ALL_GATHER_VAR, predict_optimizer

    stack = Stack(accelerate="1.15.0", torchao="0.18.0")
    yaml = {"distributed_type": "NO", "mixed_precision": "fp8", "fp8_config": {"backend": "AO"}}
    shell = {ALL_GATHER_VAR: "false"}
    assert predict_optimizer(stack, Setup(env=shell))["weights_outside_optimizer"] is False
    assert predict_optimizer(stack, Setup(env=shell, launch_yaml=yaml))["weights_outside_optimizer"] is True
    keyed = {**yaml, "fp8_config": {"backend": "AO", ALL_GATHER: False}}
    assert predict_optimizer(stack, Setup(launch_yaml=keyed))["weights_outside_optimizer"] is False
    old = Stack(accelerate="1.12.0", torchao="0.18.0")
    assert predict_optimizer(old, Setup(env=shell, launch_yaml=yaml))["weights_outside_optimizer"] is False
