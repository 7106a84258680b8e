"""Launchers and their ranks run warm and equal fresh interpreters: the real `accelerate launch` and torchrun start
the rank script, which hands its whole process to the warm server. Warm and cold give the same outcome, mixed
precision, FP8 backend, FP8 layers and bit-identical per-step losses on every rank, the same error when the ranks
raise. A handed process is exactly the command it was (argv, environment, working directory, sys.path, exit
status, signals); a variable read at import with another value sends it cold; it dies with its stub."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fp8doctor.runs import handoff, warm
from fp8doctor.runs.pool import run_spec, run_specs
from fp8doctor.runs.spec import RunSpec
from fp8doctor.system import lifeline, target

STEPS = 3
SPECS = [
    RunSpec(backend="torchao", recipe="tensorwise", entry="launch", nproc=2, steps=STEPS),
    RunSpec(backend="torchao", recipe="rowwise", entry="multiproc", nproc=2, steps=STEPS),
    # The reference bug on two ranks: bf16 with an FP8 recipe handler raises in Accelerator.__init__ on each.
    RunSpec(backend="torchao", recipe="tensorwise", entry="multiproc", nproc=2, steps=STEPS, mixed_precision="bf16"),
]


def rank_facts(r: dict[str, Any]) -> dict[str, Any]:
    acc = r.get("accelerator") or {}
    err = r.get("error") or {}
    return {"outcome": r["outcome"], "mixed_precision": acc.get("mixed_precision"),
            "distributed_type": acc.get("distributed_type"), "num_processes": acc.get("num_processes"),
            "fp8_backend": acc.get("fp8_backend"), "fp8_layers": r["fp8_layers"], "fp8_active": r["fp8_active"],
            "losses": r["losses"], "error": err.get("type"), "message": err.get("message")}


def facts(r: dict[str, Any]) -> dict[str, Any]:
    return {**rank_facts(r), "ranks": [rank_facts(x) for x in r.get("ranks", [])],
            "returncode": (r.get("launcher") or {}).get("returncode"),
            "started": (r.get("launcher") or {}).get("processes_started")}


@pytest.fixture(scope="module")
def warm_and_cold() -> dict[str, list[dict[str, Any]]]:
    try:
        warm.prefer_cold(False)
        hot = [run_spec(s) for s in SPECS]
        warm.prefer_cold(True)
        cold = run_specs(SPECS, workers=2)
    finally:
        warm.prefer_cold(False)
    return {"warm": hot, "cold": cold}


def test_launched_ranks_warm_equal_cold(warm_and_cold: dict[str, list[dict[str, Any]]]) -> None:
    for spec, hot, cold in zip(SPECS, warm_and_cold["warm"], warm_and_cold["cold"], strict=True):
        assert hot["worker"] == "warm" and cold["worker"] == "cold", spec.label()
        assert hot["launcher"]["warm"] and not cold["launcher"]["warm"], spec.label()
        assert [x["warm"] for x in hot["ranks"]] == [True, True], spec.label()
        assert [x["warm"] for x in cold["ranks"]] == [False, False], spec.label()
        assert facts(hot) == facts(cold), spec.label()
    launch, multiproc, bug = warm_and_cold["warm"]
    for r in (launch, multiproc):
        assert r["outcome"] == "finished" and r["fp8_active"] and len(r["losses"]) == STEPS
        assert {x["accelerator"]["distributed_type"] for x in r["ranks"]} == {"MULTI_CPU"}
        assert r["ranks"][0]["losses"] == r["ranks"][1]["losses"]  # one model, gradients all-reduced
    assert bug["outcome"] == "raised" and bug["error"]["type"] == "ValueError"
    assert "requires setting" in bug["error"]["message"] and len(bug["ranks"]) == 2


def _server() -> warm.Server:
    run_spec(RunSpec(env={"FP8DOCTOR_TEST_FAULT": "raise"}))
    srv = warm._servers.get(target.python())
    assert srv is not None and srv.alive and srv.handoff
    return srv


PROBE = """
import json, os, sys
from fp8doctor.runs import handoff
handoff.continue_warm_or_here()
out = {"argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0], "env": dict(os.environ), "pid": os.getpid(),
       "served": handoff.served, "torch_loaded": "torch" in sys.modules}
with open(os.environ["PROBE_OUT"] + f".{os.getpid()}.tmp", "w") as fh:
    json.dump(out, fh)
os.replace(fh.name, os.environ["PROBE_OUT"] + f".{os.getpid()}")  # a reader never sees half of it
if os.environ.get("PROBE_SLEEP"):
    import time
    time.sleep(float(os.environ["PROBE_SLEEP"]))
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
"""


def _probe_env(srv: warm.Server, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in srv.env.items() if k != "TMPDIR"}
    return {**env, "TMPDIR": str(tmp), "PROBE_OUT": str(tmp / "out"), handoff.SOCKET_ENV: srv.handoff or "",
            **extra}


def _outputs(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(tmp.glob("out.*")) if p.suffix != ".tmp"]


def test_a_handed_process_is_the_command_it_was(tmp_path: Path) -> None:
    srv = _server()
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = _probe_env(srv, tmp_path, PROBE_EXIT="7")
    stub = subprocess.run([sys.executable, str(script), "a b", "--x"], env=env, cwd=tmp_path, check=False)
    assert stub.returncode == 7  # the forked process's status, passed on by the stub
    (out,) = _outputs(tmp_path)
    assert out["served"] and out["torch_loaded"]  # ran in a fork of the server, which imported torch
    assert out["argv"] == [str(script), "a b", "--x"] and out["cwd"] == str(tmp_path)
    assert out["path0"] == str(tmp_path)
    assert out["env"] == env  # exactly the stub's environment, nothing of the server's


def test_a_variable_read_at_import_with_another_value_keeps_the_process_here(tmp_path: Path) -> None:
    srv = _server()
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    read = sorted(v for v in srv.import_reads if v.startswith("ACCELERATE_") and v not in srv.env)[0]
    env = _probe_env(srv, tmp_path, **{read: "1"})
    assert subprocess.run([sys.executable, str(script)], env=env, check=False).returncode == 0
    (out,) = _outputs(tmp_path)
    assert not out["served"] and not out["torch_loaded"]  # the stub ran it itself, cold
    unsupported = handoff.start(["-c", "pass"], env, (0, 1, 2), srv.handoff)
    assert unsupported is None  # a form the server does not start: cold as well


def _new_output(tmp: Path, seen: set[int]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fresh = [o for o in _outputs(tmp) if o["pid"] not in seen]
        if fresh:
            seen.add(fresh[0]["pid"])
            return fresh[0]
        time.sleep(0.05)
    raise AssertionError("the handed process wrote nothing")


def _alive(pid: int) -> bool:
    lifeline.wait_group_gone(pid, timeout_s=10.0)
    return bool(lifeline.group_members(pid))


def test_signals_reach_the_handed_process_and_it_dies_with_its_stub(tmp_path: Path) -> None:
    srv = _server()
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = _probe_env(srv, tmp_path, PROBE_SLEEP="120")
    seen: set[int] = set()
    stub = subprocess.Popen([sys.executable, str(script)], env=env)
    out = _new_output(tmp_path, seen)
    assert out["served"]
    stub.send_signal(signal.SIGTERM)  # what torchrun sends its ranks on a failure
    assert stub.wait(timeout=30) == -signal.SIGTERM and not _alive(out["pid"])
    stub = subprocess.Popen([sys.executable, str(script)], env=env)
    out = _new_output(tmp_path, seen)
    stub.kill()  # no handler runs: the server sees the connection close
    stub.wait(timeout=30)
    assert not _alive(out["pid"])
    handed = handoff.start([str(script)], env, (0, 1, 2), srv.handoff)
    assert handed is not None
    with pytest.raises(subprocess.TimeoutExpired):
        handed.wait(timeout=0.5)
    pid = handed.pid
    handed.kill()  # a launch entry's timeout
    assert not _alive(pid) and srv.alive


def test_malformed_requests_are_refused_and_the_server_goes_on(tmp_path: Path) -> None:
    import socket

    srv = _server()
    assert srv.handoff is not None
    with socket.socket(socket.AF_UNIX) as sock:  # no header, no descriptors
        sock.connect(srv.handoff)
        sock.sendall(b"garbage\n")
        assert sock.recv(100) == b""  # closed without an answer
    with socket.socket(socket.AF_UNIX) as sock:  # well framed, wrong types
        sock.connect(srv.handoff)
        handoff.send_request(sock, {"python": sys.executable, "args": 5, "env": {"A": 1}, "cwd": "/"}, [0, 1, 2])
        assert json.loads(sock.makefile("rb").readline()) == {"cold": "malformed request"}
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = _probe_env(srv, tmp_path)
    assert subprocess.run([sys.executable, str(script)], env=env, check=False).returncode == 0
    assert _outputs(tmp_path)[0]["served"] and srv.alive
