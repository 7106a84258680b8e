"""Faults, with real processes and real signals: a run killed by SIGKILL or SIGSEGV, a run that hangs past its
timeout, a run starved of memory (RLIMIT_AS), the harness interrupted with SIGINT mid-matrix and continued with
--resume, a corrupted results file, an unwritable or full output place, CUDA_VISIBLE_DEVICES="" and a broken
install. Each must end in a clear result and the documented exit code, never a hang or a traceback.

Run faults are injected with the worker's test hook FP8DOCTOR_TEST_FAULT (fp8doctor/runs/worker.py), passed in
the spec's env: the pool never inherits FP8DOCTOR_* from the caller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from dispositions import default_signals

from fp8doctor.matrix import render
from fp8doctor.matrix.plan import Cell
from fp8doctor.matrix.run import execute
from fp8doctor.runs.pool import run_spec
from fp8doctor.runs.spec import RunSpec
from fp8doctor.runs.zygote import RUN_NAME
from fp8doctor.system import lifeline

FAULT = "FP8DOCTOR_TEST_FAULT"
SMALL = ["--backend", "torchao", "--recipe", "tensorwise", "--entry", "native", "--steps", "2"]


def fault_spec(fault: str, timeout_s: float = 60.0, **env: str) -> RunSpec:
    return RunSpec(entry="native", steps=2, timeout_s=timeout_s, env={FAULT: fault, **env})


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_"))}
    env["HOME"] = str(tmp)
    env.update(extra)
    return env


def fp8doctor(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p


def live_processes_with(marker: str) -> list[int]:
    """Pids of processes whose environment holds `marker` (what a leaked child would still carry)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "environ").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


# ------------------------------------------------------------------ one run: the pool's verdict on each fault

@pytest.mark.parametrize(("fault", "sig"), [("kill", "SIGKILL"), ("segv", "SIGSEGV")])
def test_run_killed_by_signal_is_crashed(fault: str, sig: str) -> None:
    r = run_spec(fault_spec(fault))
    assert r["outcome"] == "crashed"
    assert r["error"]["signal"] == sig and sig in r["error"]["message"]
    assert r["returncode"] == -getattr(signal, sig)
    assert r["wall_s"] < 30


def test_worker_exit_without_result_and_raise() -> None:
    r = run_spec(fault_spec("exit"))
    assert r["outcome"] == "crashed" and r["error"]["exit_code"] == 3
    assert "without writing a result" in r["error"]["message"]
    r = run_spec(fault_spec("raise"))
    assert r["outcome"] == "raised" and r["error"]["type"] == "RuntimeError"
    assert FAULT in r["error"]["message"]


def test_hang_past_timeout_kills_the_whole_group() -> None:
    marker = f"FP8DOCTOR_FAULT_MARK={uuid.uuid4().hex}"
    name, value = marker.split("=")
    t0 = time.monotonic()
    r = run_spec(fault_spec("hang", timeout_s=2.0, **{name: value}))
    took = time.monotonic() - t0
    assert r["outcome"] == "timed_out"
    assert "no result within 2 s" in r["error"]["message"]
    assert took < 2.0 + 3.0 + 10.0  # timeout + SIGTERM grace + slack
    assert live_processes_with(marker) == []
    assert lifeline.group_members(r["worker_pid"]) == []  # a warm run's environ is the server's: check its group


@pytest.mark.parametrize(("worker", "fault"), [("cold", "oom"), ("warm", "oom:8")])
def test_memory_limit_is_a_recorded_failure(worker: str, fault: str) -> None:
    """RLIMIT_AS capped a little above what the worker maps at start: the run fails where a memory-starved
    machine fails (mapping libtorch, an allocator, BLAS, a thread stack) and the pool records it. A warm run maps
    the libraries before the cap, so its headroom is smaller."""
    from fp8doctor.runs import warm

    warm.prefer_cold(worker == "cold")
    try:
        r = run_spec(fault_spec(fault))
    finally:
        warm.prefer_cold(False)
    assert r["worker"] == worker
    assert r["outcome"] in ("raised", "crashed"), r
    evidence = json.dumps(r["error"]) + r.get("stderr_tail", "")
    assert any(w in evidence.lower() for w in ("memory", "map segment", "alloc", "sigabrt", "sigsegv",
                                               "resource temporarily unavailable")), evidence
    assert r["wall_s"] < 60


def test_matrix_records_and_fails_crashed_cells(tmp_path: Path) -> None:
    """Faulty cells through the matrix engine: one JSON line each, status fail, exit code 1, reason in the table."""
    out = tmp_path / "m.jsonl"
    cells = [Cell(fault_spec("segv"), "fp8"), Cell(fault_spec("hang", timeout_s=2.0), "fp8")]
    result = execute(cells, workers=2, out=str(out))
    assert result.exit_code() == 1
    assert [row.status for row in result.rows] == ["fail", "fail"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(rec["result"]["outcome"] for rec in lines) == ["crashed", "timed_out"]
    text = render.render(result, "text")
    assert "SIGSEGV" in text and ("timed out" in text or "timed_out" in text)


# ------------------------------------------------------------------ the harness interrupted, then resumed

@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`fp8doctor matrix` (3 cells, 1 worker, CUDA_VISIBLE_DEVICES="") sent SIGINT once its first cell is on disk."""
    tmp = tmp_path_factory.mktemp("sigint")
    out = tmp / "m.jsonl"
    args = ["matrix", *SMALL, "--recipe", "rowwise", "--workers", "1", "--out", str(out)]
    env = clean_env(tmp, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen([sys.executable, "-m", "fp8doctor", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp, stdin=subprocess.DEVNULL,
                            preexec_fn=default_signals)
    deadline = time.monotonic() + 300
    while not (out.exists() and out.stat().st_size > 0):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no cell finished in 300 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    stdout, stderr = proc.communicate(timeout=300)
    return {"tmp": tmp, "out": out, "args": args, "env": env, "rc": proc.returncode, "stdout": stdout,
            "stderr": stderr, "stop_s": time.monotonic() - t0}


def test_sigint_mid_matrix_keeps_valid_lines(interrupted: dict) -> None:
    assert interrupted["rc"] == 130, interrupted["stderr"][-3000:]
    assert "Traceback" not in interrupted["stderr"]
    assert "interrupted" in interrupted["stderr"]
    assert interrupted["stop_s"] < 120  # at most the cell in flight finishes
    lines = interrupted["out"].read_bytes().decode().splitlines()
    assert 1 <= len(lines) < 3
    for line in lines:
        rec = json.loads(line)
        assert rec["result"]["outcome"] == "finished" and rec["result"]["device"].startswith("cpu")


def test_resume_finishes_then_survives_a_corrupted_file(interrupted: dict) -> None:
    out, tmp, env = interrupted["out"], interrupted["tmp"], interrupted["env"]
    before = {json.loads(line)["key"] for line in out.read_text().splitlines()}
    p = fp8doctor([*interrupted["args"], "--resume", "--format", "json"], env, tmp)
    assert p.returncode == 0, p.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    keys = [rec["key"] for rec in records]
    assert len(set(keys)) == 3 and before <= set(keys)
    assert len(keys) == 3  # nothing measured twice

    # Truncate the last record mid-line and put garbage before it: --resume reports both, reruns that cell only.
    raw = out.read_bytes().splitlines(keepends=True)
    lost = json.loads(raw[-1])["key"]
    out.write_bytes(raw[0] + b"\x00\xffnot json at all\n" + b"".join(raw[1:-1]) + raw[-1][: len(raw[-1]) // 2])
    p = fp8doctor([*interrupted["args"], "--resume"], env, tmp)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resume:" in p.stdout and "truncated last line ignored" in p.stdout and "unreadable line" in p.stdout
    good = []
    for line in out.read_bytes().splitlines():
        try:
            good.append(json.loads(line)["key"])
        except ValueError:
            continue
    assert sorted(good) == sorted(set(keys)) and good.count(lost) == 1


def workers_alive(marker: str) -> list[int]:
    out = []
    for pid in live_processes_with(marker):
        try:
            cold = b"fp8doctor.runs.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
            if cold or Path(f"/proc/{pid}/comm").read_text().strip() == RUN_NAME:  # a run forked by the warm server
                out.append(pid)
        except OSError:
            continue
    return out


def test_sigint_in_repro_stops_running_children(tmp_path: Path) -> None:
    """Ctrl-C in `fp8doctor repro` (no results file to keep): queued runs are dropped, running children killed."""
    marker = f"FAULT_TEST_MARK={uuid.uuid4().hex}"
    name, value = marker.split("=")
    proc = subprocess.Popen([sys.executable, "-m", "fp8doctor", "repro", "--steps", "2", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=clean_env(tmp_path, **{name: value}), stdin=subprocess.DEVNULL,
                            preexec_fn=default_signals)
    deadline = time.monotonic() + 120
    while not workers_alive(marker):
        assert proc.poll() is None and time.monotonic() < deadline, "no run started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert time.monotonic() - t0 < 20  # SIGTERM to each group, SIGKILL after 3 s at worst
    while workers_alive(marker) and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    assert workers_alive(marker) == []


# ------------------------------------------------------------------ output places that cannot be written

def test_unwritable_output_place_is_exit_2_before_any_run(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    blocked = tmp_path / "ro"
    blocked.mkdir()
    if os.geteuid() != 0:
        blocked.chmod(0o555)
    else:  # root writes through file modes; procfs refuses new entries to anyone
        blocked = Path("/proc/fp8doctor-test")
    t0 = time.monotonic()
    p = fp8doctor(["report", "--out-dir", str(blocked / "reports")], env, tmp_path, timeout=60)
    assert p.returncode == 2 and "cannot write the report into" in p.stderr and p.stdout == ""
    p = fp8doctor(["matrix", *SMALL, "--out", str(blocked / "m.jsonl")], env, tmp_path, timeout=60)
    assert p.returncode == 2 and "cannot write results to" in p.stderr and p.stdout == ""
    assert time.monotonic() - t0 < 30  # refused before any run


MATRIX_FULL_DISK = r"""
import resource, sys
limit = int(sys.argv[1])
# Python ignores SIGXFSZ: a write past the limit fails with EFBIG. The results file already holds `limit` bytes,
# so every append fails, while the workers' own small files (spec, result, stderr) stay under it.
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from fp8doctor.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_full_results_file_keeps_every_result(tmp_path: Path) -> None:
    """A results file that stops taking lines (RLIMIT_FSIZE reached: EFBIG, as on a full disk ENOSPC): the matrix
    still runs, prints every result, then exits 2 with one line (CUDA_VISIBLE_DEVICES="": the runs say cpu)."""
    limit = 1 << 20
    out = tmp_path / "m.jsonl"
    out.write_bytes(b"\n" * limit)
    p = subprocess.run([sys.executable, "-c", MATRIX_FULL_DISK, str(limit), "matrix", *SMALL, "--out", str(out),
                        "--format", "json"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=clean_env(tmp_path, CUDA_VISIBLE_DEVICES=""), stdin=subprocess.DEVNULL)
    assert p.returncode == 2, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"cannot write results to {out}: File too large" in errors[0]
    shown = json.loads(p.stdout)
    cells = shown["cells"] if "cells" in shown else shown["rows"]
    assert len(cells) == 2 and all(json.dumps(c).count('"finished"') for c in cells)


REPORT_FULL_DISK = r"""
import dataclasses, resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # Python ignores SIGXFSZ: writes past it fail (EFBIG)
import fp8doctor.report.command as command
from fp8doctor.cli import main
full_build = command.build
# env part only: the write path is what is under test, not minutes of runs
command.build = lambda opts: full_build(dataclasses.replace(opts, skip_parts=("repro", "matrix")))
sys.exit(main(["report", "--out-dir", sys.argv[1]]))
"""


def test_report_write_failure_after_measuring_prints_it(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-c", REPORT_FULL_DISK, str(tmp_path / "reports")], capture_output=True,
                       text=True, env=clean_env(tmp_path), timeout=120)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.returncode == 2, (p.stdout[-2000:], p.stderr[-2000:])
    assert "# fp8doctor report" in p.stdout and "<summary>Environment:" in p.stdout  # nothing measured is lost
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("fp8doctor report: 1/1 parts done")]  # progress
    assert len(errors) == 1 and "cannot write" in errors[0] and "File too large" in errors[0]


# ------------------------------------------------------------------ the machine and the install

def test_cuda_visible_devices_empty(tmp_path: Path) -> None:
    p = fp8doctor(["env", "--format", "json"], clean_env(tmp_path, CUDA_VISIBLE_DEVICES=""), tmp_path, timeout=60)
    assert p.returncode == 0  # no FP8 intent: a missing GPU is a warning
    gpu = next(f for f in json.loads(p.stdout)["findings"] if f["id"].startswith("gpu."))
    assert gpu["level"] == "warn"
    # (all-gather off: Accelerate's own torchao config would otherwise leave the FP8 weights out of the optimizer on
    # accelerate >= 1.13, a failure of its own, `optimizer.fp8-weights`)
    p = fp8doctor(["env"], clean_env(tmp_path, CUDA_VISIBLE_DEVICES="", ACCELERATE_MIXED_PRECISION="fp8",
                                     ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER="false"), tmp_path, timeout=60)
    # With FP8 intended, a hidden GPU is still no proof that the training machine lacks one: unknown, a warning.
    assert p.returncode == 0 and "[!] No CUDA GPU visible: FP8 hardware support unknown here" in p.stdout


def test_broken_torchao_install(tmp_path: Path) -> None:
    """A `torchao` package that raises on import, first on the children's PYTHONPATH. transformers 5.x imports
    torchao whenever it is installed, so the bf16 baseline breaks too: both cells are `raised` with that error and
    the file it came from, and the matrix exits 1."""
    shadow = tmp_path / "shadow" / "torchao"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("torchao is broken on purpose (fp8doctor fault test)")\n')
    env = clean_env(tmp_path, PYTHONPATH=str(shadow.parent), CUDA_VISIBLE_DEVICES="")
    p = fp8doctor(["matrix", *SMALL, "--out", str(tmp_path / "m.jsonl")], env, tmp_path)
    assert p.returncode == 1, p.stderr[-3000:]
    assert "fail" in p.stdout
    records = {json.loads(line)["role"]: json.loads(line)["result"] for line in (tmp_path / "m.jsonl").open()}
    assert set(records) == {"baseline", "fp8"}
    for result in records.values():
        assert result["outcome"] == "raised", result.get("error")
        assert result["error"]["type"] == "ImportError"
        assert "torchao is broken on purpose" in result["error"]["message"]
        assert result["error"]["user_where"].startswith("shadow/torchao/__init__.py:1")


def test_broken_dependency_of_the_cli_is_one_line(tmp_path: Path) -> None:
    """fp8doctor's own dependency broken (a `yaml` that raises on import): one line naming it, exit 2."""
    shadow = tmp_path / "shadow" / "yaml"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("yaml is broken on purpose (fp8doctor fault test)")\n')
    p = fp8doctor(["env"], clean_env(tmp_path, PYTHONPATH=str(shadow.parent)), tmp_path, timeout=60)
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error: broken install: ImportError: yaml is broken on purpose" in lines[0]
    assert str(shadow / "__init__.py") in lines[0]
