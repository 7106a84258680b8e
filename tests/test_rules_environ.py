"""Environment rules on hand-made facts, and the ACCELERATE_FP8_* validators against the installed accelerate."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import get_args

import pytest
from env_facts_helpers import cfg, make_facts

from fp8doctor.findings import Level
from fp8doctor.rules import environ


def test_mixed_precision_not_fp8_while_intended() -> None:
    facts = make_facts(env={"ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_FP8_BACKEND": "TE"})
    f = environ.check_env_mixed_precision(facts)
    assert f.level is Level.FAIL and "bf16" in f.title and f.fix == "export ACCELERATE_MIXED_PRECISION=fp8"
    assert environ.check_env_mixed_precision(make_facts(env={"ACCELERATE_MIXED_PRECISION": "fp8"})).level is Level.OK
    launched = make_facts(env={"ACCELERATE_MIXED_PRECISION": "bf16"},
                          configs=[cfg("accelerate", {"mixed_precision": "fp8"}, "acc.yaml")])
    f = environ.check_env_mixed_precision(launched)
    assert f.level is Level.WARN and "accelerate launch --config_file acc.yaml" in f.detail
    skipped = environ.check_env_mixed_precision(make_facts(env={"ACCELERATE_MIXED_PRECISION": "bf16"}))
    assert skipped.level is Level.SKIP and "no sign of FP8 intent" in skipped.detail


def test_invalid_fp8_values_are_each_named() -> None:
    env = {"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": "torchao", "ACCELERATE_FP8_FORMAT": "e4m3",
           "ACCELERATE_FP8_AMAX_COMPUTE_ALGO": "mean", "ACCELERATE_FP8_AMAX_HISTORY_LEN": "16x",
           "ACCELERATE_FP8_PAD_INNER_DIM": "maybe"}
    f = environ.check_fp8_env_values(make_facts(env=env))
    assert f.level is Level.FAIL
    for bad in ("BACKEND", "AMAX_COMPUTE_ALGO", "AMAX_HISTORY_LEN", "PAD_INNER_DIM"):
        assert f"ACCELERATE_FP8_{bad}" in f.detail
    assert "ACCELERATE_FP8_FORMAT" not in f.detail  # Accelerate upper-cases the format
    good = environ.check_fp8_env_values(make_facts(env={"ACCELERATE_FP8_BACKEND": "TE", "ACCELERATE_FP8_MARGIN": "0"}))
    assert good.level is Level.OK
    assert environ.check_fp8_env_values(make_facts()) is None


def test_unread_lookalikes_warn_with_the_real_name() -> None:
    env = {"FP8_BACKEND": "te", "FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": "1", "ACCELERATE_FP8_RECIPE": "delayed",
           "ACCELERATE_FP8_BACKEND": "TE"}
    findings = environ.check_unread_lookalikes(make_facts(env=env))
    names = {f.id.removeprefix("env.unread.") for f in findings}
    assert names == {"FP8_BACKEND", "FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER", "ACCELERATE_FP8_RECIPE"}
    assert all(f.level is Level.WARN for f in findings)
    fix = {f.id: f.fix for f in findings}
    assert "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER" in fix["env.unread.FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER"]


@pytest.fixture(scope="module")
def accel() -> object:
    return pytest.importorskip("accelerate.utils.dataclasses")


@pytest.mark.parametrize("value", ["AO", "TE", "MSAMP", "ao", "te", "torchao", "NO"])
def test_backend_validator_agrees_with_accelerate(accel, value: str) -> None:
    try:
        accel.FP8BackendType(value)
        accepted = True
    except ValueError:
        accepted = False
    ours = environ.validate_fp8_env({"ACCELERATE_FP8_BACKEND": value})
    # "NO" is Accelerate's own "auto-detect" default; a user has no reason to set it, we flag it.
    assert (not ours) == (accepted and value != "NO")


@pytest.mark.parametrize("value", ["hybrid", "E4M3", "e5m2", "E3M4", ""])
def test_format_and_algo_validators_agree_with_accelerate(accel, value: str) -> None:
    fmt_ok = value.upper() in get_args(accel.FP8Format)
    assert (not environ.validate_fp8_env({"ACCELERATE_FP8_FORMAT": value})) == fmt_ok
    algo = value.lower().replace("hybrid", "max").replace("e4m3", "most_recent")
    algo_ok = algo in get_args(accel.AmaxComputeAlgorithm)
    assert (not environ.validate_fp8_env({"ACCELERATE_FP8_AMAX_COMPUTE_ALGO": algo})) == algo_ok


@pytest.mark.parametrize("value", ["1", "true", "On", "no", "maybe", "2"])
def test_flag_validator_agrees_with_accelerate(value: str) -> None:
    from accelerate.utils.environment import str_to_bool

    try:
        str_to_bool(value)
        accepted = True
    except ValueError:
        accepted = False
    assert (not environ.validate_fp8_env({"ACCELERATE_FP8_PAD_INNER_DIM": value})) == accepted


def test_lowercase_backend_really_breaks_accelerator() -> None:
    """The rule's claim, checked on the installed accelerate in a child process: `ao` raises, `AO` works."""
    code = ("from accelerate import Accelerator\n"
            "a = Accelerator(cpu=True)\n"
            "print('BACKEND', a.mixed_precision, a.fp8_backend.value)\n")
    procs = {value: subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": value})
        for value in ("ao", "AO")}
    results = {value: subprocess.CompletedProcess(p.args, 0, *p.communicate(timeout=180)) for value, p in procs.items()}
    for value, p in procs.items():
        results[value].returncode = p.returncode
    assert results["ao"].returncode != 0 and "not a valid FP8BackendType" in results["ao"].stderr
    assert "BACKEND fp8 AO" in results["AO"].stdout, results["AO"].stderr[-2000:]
    assert environ.validate_fp8_env({"ACCELERATE_FP8_BACKEND": "ao"})
    assert not environ.validate_fp8_env({"ACCELERATE_FP8_BACKEND": "AO"})


EXACT_PROBE = """
import json, os, sys, torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
acc = Accelerator()
model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(6)])
model = acc.prepare(model)
fp8 = sum(type(m).__name__.startswith("Float8") for m in model.modules())
print("RESULT " + json.dumps({"mixed_precision": str(acc.state.mixed_precision), "fp8_layers": fp8}))
"""


@pytest.mark.parametrize("value", ["Fp8", "FP8 "])
def test_mixed_precision_value_read_exactly(value: str) -> None:
    """Issue 14: a value Accelerate compares exactly is a finding, and the installed accelerate really leaves FP8 off
    with it (the lab records the same for every cell: tests/test_generation_predictions.py)."""
    facts = make_facts(env={"ACCELERATE_MIXED_PRECISION": value})
    f = environ.check_env_mixed_precision(facts)
    assert f.level is Level.FAIL and repr(value) in f.title and f.fix == "export ACCELERATE_MIXED_PRECISION=fp8"
    assert facts["precision"]["effective"] == value
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    proc = subprocess.run([sys.executable, "-c", EXACT_PROBE], env={**env, "ACCELERATE_MIXED_PRECISION": value},
                          capture_output=True, text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stderr[-2000:]
    import json

    real = json.loads(line[0].removeprefix("RESULT "))
    assert real == {"mixed_precision": value, "fp8_layers": 0}
    assert facts["precision"]["outcome"] == {"outcome": "ok", "mixed_precision": value, "fp8": False}


def test_fp8_backend_variable_unread_before_1_9() -> None:
    env = {"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": "ao"}
    f = environ.check_fp8_env_values(make_facts(packages={"accelerate": "1.5.2"}, env=env))
    assert f.level is Level.WARN and "not read by Accelerator in accelerate 1.5.2" in f.title
