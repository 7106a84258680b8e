"""The pool's robustness with real child processes: hang -> timed_out, signal -> crashed, exit without result ->
crashed with the exit code, raise -> raised; skipped specs never spawn; the caller's FP8 variables are recorded,
redacted and not inherited."""

from __future__ import annotations

import time

from fp8doctor.redact import REDACTED
from fp8doctor.runs.machine import skip_reason
from fp8doctor.runs.pool import child_env, run_spec, run_specs
from fp8doctor.runs.spec import RunSpec


def fault(kind: str, **kw) -> RunSpec:
    return RunSpec(env={"FP8DOCTOR_TEST_FAULT": kind}, **kw)


def test_faults_become_results():
    seen = []
    specs = [fault("hang", timeout_s=2), fault("segv"), fault("exit"), fault("raise")]
    t = time.perf_counter()
    hang, segv, exited, raised = run_specs(specs, workers=2,
                                           on_result=lambda s, r: seen.append(s.env["FP8DOCTOR_TEST_FAULT"]))
    assert time.perf_counter() - t < 30
    assert sorted(seen) == ["exit", "hang", "raise", "segv"]
    assert hang["outcome"] == "timed_out" and 2 <= hang["wall_s"] < 15
    assert segv["outcome"] == "crashed" and segv["error"]["signal"] == "SIGSEGV"
    assert exited["outcome"] == "crashed" and exited["error"]["exit_code"] == 3
    assert raised["outcome"] == "raised" and raised["error"]["type"] == "RuntimeError"
    assert raised["error"]["user_where"].startswith("fp8doctor/runs/worker.py:")


def test_caller_env_is_recorded_redacted_and_not_inherited():
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "ACCELERATE_MIXED_PRECISION": "bf16",
            "ACCELERATE_FP8_TOKEN_SECRET": "x", "HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz", "RANK": "3"}
    env, removed = child_env(RunSpec(env={"ACCELERATE_FP8_BACKEND": "AO"}), base)
    assert "ACCELERATE_MIXED_PRECISION" not in env and "RANK" not in env
    assert env["ACCELERATE_FP8_BACKEND"] == "AO" and env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_TOKEN"] == base["HF_TOKEN"]  # credentials for the hub are not FP8 settings
    assert set(removed) == {"ACCELERATE_MIXED_PRECISION", "ACCELERATE_FP8_TOKEN_SECRET", "RANK"}
    import sys

    r = run_spec(fault("raise"), env_base={**base, "PATH": sys.exec_prefix + "/bin:/usr/bin:/bin"})
    assert r["env"]["removed_from_caller"]["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert r["env"]["removed_from_caller"]["ACCELERATE_FP8_TOKEN_SECRET"] == REDACTED
    assert "hf_abcdefghijklmnopqrstuvwxyz" not in str(r)


def test_skipped_without_spawning_and_skip_reasons():
    t = time.perf_counter()
    r = run_spec(RunSpec(backend="te", recipe="delayed_hybrid"))
    facts_no_te = {"installed": {"torchao": "0.18.0"}, "cc": None, "gpu_count": 0}
    if skip_reason(RunSpec(backend="te", recipe="delayed_hybrid")):
        assert r["outcome"] == "skipped" and r["skip_reason"] and "pid" not in r
        assert time.perf_counter() - t < 5
    assert "not installed" in skip_reason(RunSpec(backend="te", recipe="current"), facts_no_te)
    te = {"installed": {"transformer-engine": "2.9", "torchao": "0.18"}, "cc": (8, 9), "gpu_count": 1}
    assert skip_reason(RunSpec(backend="te", recipe="delayed_hybrid"), te) is None
    assert "9.0" in skip_reason(RunSpec(backend="te", recipe="block", entry="native"), te)
    assert "TERecipeKwargs" in skip_reason(RunSpec(backend="te", recipe="current", entry="accelerator"),
                                           {**te, "cc": (9, 0)})
    assert "8.9" in skip_reason(RunSpec(backend="torchao"), {**te, "cc": (8, 0)})
    assert skip_reason(RunSpec(backend="torchao"), facts_no_te) is None  # CPU: emulated
    assert "2 GPUs" in skip_reason(RunSpec(entry="multiproc", nproc=2), te)
    assert skip_reason(RunSpec(backend="none", recipe="bf16"), {"installed": {}}) is None


def test_invalid_spec_is_a_result():
    r = run_spec(RunSpec(recipe="nope"))
    assert r["outcome"] == "raised" and "unknown recipe" in r["error"]["message"]


def test_redact_result_keeps_fields_and_hides_secrets():
    from fp8doctor.redact import redact as redact_result

    r = redact_result({"spec": {"env": {"HF_TOKEN": "x", "A": "b"}}, "tokens_per_s": 3.0, "key": "k",
                       "launcher": {"launcher_env": {"ACCELERATE_API_KEY": "v"}},
                       "error": {"message": "GET https://user:pw@hub/x failed with hf_" + "z" * 24}})
    assert r["spec"]["env"] == {"HF_TOKEN": REDACTED, "A": "b"}
    assert r["tokens_per_s"] == 3.0 and r["key"] == "k"
    assert r["launcher"]["launcher_env"]["ACCELERATE_API_KEY"] == REDACTED
    assert "pw" not in r["error"]["message"] and "z" * 24 not in r["error"]["message"]
