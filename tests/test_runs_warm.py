"""Warm workers equal fresh interpreters: the same specs run through the warm server and cold give the same
outcome, mixed precision, FP8 backend, FP8 layers, torch threads and bit-identical per-step losses. A run whose
env differs from the parent's, the reference report's monkey-patch (which must not reach the next run), crashes
and hangs are included; the server survives them all."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from fp8doctor.runs import warm
from fp8doctor.runs.pool import run_spec, run_specs
from fp8doctor.runs.spec import RunSpec
from fp8doctor.runs.zygote import PRELOAD
from fp8doctor.system import lifeline, target

STEPS = 3
# Run in this order on one server: the patched run comes before the runs it must not leak into.
SPECS = [
    RunSpec(backend="torchao", recipe="tensorwise", entry="buggy_patch_append", steps=STEPS, bf16=True),
    RunSpec(backend="torchao", recipe="tensorwise", entry="trainer", steps=STEPS,
            env={"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": "AO", "OMP_NUM_THREADS": "1"}),
    RunSpec(backend="torchao", recipe="tensorwise", entry="trainer", steps=STEPS,
            env={"ACCELERATE_MIXED_PRECISION": "bf16"}),
    RunSpec(backend="torchao", recipe="rowwise", entry="accelerator", steps=STEPS),
    RunSpec(backend="torchao", recipe="tensorwise", entry="native", steps=STEPS),
]


def same_facts(r: dict[str, Any]) -> dict[str, Any]:
    acc = r.get("accelerator") or {}
    return {"outcome": r["outcome"], "mixed_precision": acc.get("mixed_precision"),
            "fp8_backend": acc.get("fp8_backend"), "fp8_layers": r["fp8_layers"], "fp8_active": r["fp8_active"],
            "losses": r["losses"], "torch_threads": r.get("torch_threads"), "patch": r.get("patch"),
            "error": (r.get("error") or {}).get("type"), "message": (r.get("error") or {}).get("message")}


@pytest.fixture(scope="module")
def warm_and_cold() -> dict[str, list[dict[str, Any]]]:
    os.environ["ACCELERATE_MIXED_PRECISION"] = "no"  # the parent's own setting, never a run's
    try:
        warm.close_all()
        warm.prefer_cold(False)
        hot = [run_spec(s) for s in SPECS]
        srv = warm._servers[target.python()]
        warm.prefer_cold(True)
        cold = run_specs(SPECS, workers=2)
    finally:
        warm.prefer_cold(False)
        del os.environ["ACCELERATE_MIXED_PRECISION"]
    return {"warm": hot, "cold": cold, "server": [srv]}


def test_warm_runs_equal_cold_runs(warm_and_cold: dict[str, list[dict[str, Any]]]) -> None:
    for spec, hot, cold in zip(SPECS, warm_and_cold["warm"], warm_and_cold["cold"], strict=True):
        assert hot["worker"] == "warm" and cold["worker"] == "cold", spec.label()
        assert same_facts(hot) == same_facts(cold), spec.label()
    patched, fp8_env, bf16_env, accel, native = warm_and_cold["warm"]
    assert patched["outcome"] == "raised" and patched["patch"]["injected"] == 1
    # Had the patch leaked, these Trainer runs would have gone through it (and raised like the patched one).
    for r in (fp8_env, bf16_env):
        assert r["outcome"] == "finished" and "patch" not in r
    assert fp8_env["accelerator"]["mixed_precision"] == "fp8" and fp8_env["fp8_layers"]
    assert fp8_env["torch_threads"] == 1
    assert bf16_env["accelerator"]["mixed_precision"] == "bf16" and bf16_env["fp8_layers"] == []
    assert accel["fp8_active"] and native["fp8_active"] and len(accel["losses"]) == STEPS


def test_server_preloaded_without_touching_cuda_or_te(warm_and_cold: dict[str, list[Any]]) -> None:
    srv = warm_and_cold["server"][0]
    assert srv.preloaded and set(srv.preloaded) <= set(PRELOAD)
    assert not srv.cuda_initialised
    assert srv.threads == 1  # forking is safe: no thread of the server is lost in the child
    assert not any(m.startswith("transformer_engine") for m in srv.preloaded)
    assert "ACCELERATE_MIXED_PRECISION" not in srv.import_reads  # read when the Accelerator is built, in the child


def _server() -> warm.Server:
    """The warm server the pool runs specs on (started by a first, quick run if needed)."""
    run_spec(RunSpec(env={"FP8DOCTOR_TEST_FAULT": "raise"}))
    srv = warm._servers.get(target.python())
    assert srv is not None and srv.alive
    return srv


def test_a_variable_read_at_import_sends_the_run_cold() -> None:
    srv = _server()
    read_at_import = sorted(v for v in srv.import_reads if v.startswith(("ACCELERATE_", "TORCH")))
    assert read_at_import, srv.import_reads  # accelerate reads ACCELERATE_LOG_LEVEL when imported
    r = run_spec(RunSpec(env={"FP8DOCTOR_TEST_FAULT": "raise", read_at_import[0]: "1"}))
    assert r["worker"] == "cold" and r["outcome"] == "raised"
    r = run_spec(RunSpec(env={"FP8DOCTOR_TEST_FAULT": "raise"}))
    assert r["worker"] == "warm" and r["outcome"] == "raised"


def _gone(pgid: int) -> bool:
    lifeline.wait_group_gone(pgid, timeout_s=10.0)
    return lifeline.group_members(pgid) == []


def test_crashes_and_hangs_are_results_and_the_server_survives() -> None:
    srv = _server()
    server_pid = srv.proc.pid
    specs = [RunSpec(env={"FP8DOCTOR_TEST_FAULT": kind}, timeout_s=3.0) for kind in ("abort", "kill", "hang", "exit")]
    aborted, killed, hung, exited = run_specs(specs, workers=2)
    assert all(r["worker"] == "warm" for r in (aborted, killed, hung, exited))
    assert aborted["outcome"] == "crashed" and aborted["error"]["signal"] == "SIGABRT"
    assert killed["outcome"] == "crashed" and killed["error"]["signal"] == "SIGKILL"
    assert hung["outcome"] == "timed_out" and _gone(hung["worker_pid"])
    assert exited["outcome"] == "crashed" and exited["error"]["exit_code"] == 3
    assert srv.alive and srv.proc.poll() is None
    after = run_spec(RunSpec(steps=2))
    assert after["worker"] == "warm" and after["outcome"] == "finished" and srv.proc.pid == server_pid


def test_server_ends_when_fp8doctor_closes_it_and_takes_its_runs_along() -> None:
    srv = warm.Server(target.python(), {**os.environ, "FP8DOCTOR_TEST_FAULT": ""})
    tmp = Path(srv.tmp)
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(RunSpec(env={"FP8DOCTOR_TEST_FAULT": "hang"}).to_dict()))
    proc = srv.start(str(spec_path), str(tmp / "result.json"), str(tmp / "err.txt"),
                     {**os.environ, "FP8DOCTOR_TEST_FAULT": "hang"})
    deadline = time.monotonic() + 30
    while not lifeline.group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lifeline.group_members(proc.pid)
    srv.close()
    assert _gone(proc.pid) and not tmp.exists()
