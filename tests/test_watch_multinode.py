"""`fp8doctor watch --records DIR` on two real torchrun "nodes" of this machine, and `watch --merge DIR`.

Each node is its own `torchrun --nnodes 2 --node_rank K --nproc_per_node 1` launch (static rendezvous on
127.0.0.1, gloo) under its own `fp8doctor watch --records DIR`, training the tiny Llama with torchao FP8
(emulated, CPU). Each pair of launches runs once per session (shared between xdist workers).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from dispositions import default_signals
from session_cache import computed_once, shared_root
from test_faults import live_processes_with

from fp8doctor.watch.merge import differences, job_verdict
from fp8doctor.watch.record_check import read_record_file
from fp8doctor.watch.records import identity, watch_place

SCRIPTS = Path(__file__).parent / "watch_scripts"
BIN = Path(sys.executable).parent
PY = sys.executable
STALL_MIN_S = 300.0  # no record at all yet: interpreters start, torch imports, the two nodes meet
STALL_FACTOR = 20.0  # times the longest gap between two records seen so far (one training step, one import)
MERGE_WAIT_S = "600"  # rank 0's watch waits for node 1's; each step's time is checked by the stall limit above
# torchrun's console script where this interpreter's environment has one, else the module it runs
_TORCHRUN_SCRIPT = shutil.which("torchrun", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
TORCHRUN = [_TORCHRUN_SCRIPT] if _TORCHRUN_SCRIPT else [PY, "-m", "torch.distributed.run"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_", "SLURM_"))
           and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1", PYTHONHASHSEED="0",
               GLOO_SOCKET_IFNAME="lo", ACCELERATE_USE_CPU="true", **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_log(f: Any) -> str:
    f.seek(0)
    text = f.read()
    f.close()
    return text


def _merge(directory: Path | str, fmt: str = "text") -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "fp8doctor", "watch", "--merge", str(directory), "--format", fmt],
                          capture_output=True, text=True, timeout=120)


def _records_size(records: Path) -> int:
    return sum(f.stat().st_size for f in records.glob("*/*") if f.is_file()) if records.exists() else 0


def _wait_while_progressing(procs: dict[int, subprocess.Popen], records: Path) -> None:
    """Wait for both launches as long as they make progress. The limit is scaled from the step times measured
    here: a failure is no new record for STALL_FACTOR times the longest gap seen between two records (at least
    STALL_MIN_S, the start: imports and rendezvous), not a fixed total that a loaded machine overruns."""
    size, last_growth, longest_gap = _records_size(records), time.monotonic(), 0.0
    while any(p.poll() is None for p in procs.values()):
        now = time.monotonic()
        grown = _records_size(records)
        if grown != size:
            longest_gap = max(longest_gap, now - last_growth) if size else longest_gap
            size, last_growth = grown, now
        limit = max(STALL_MIN_S, STALL_FACTOR * longest_gap)
        assert now - last_growth < limit, f"no new record for {now - last_growth:.0f} s (limit {limit:.0f} s)"
        time.sleep(0.5)


def _two_nodes(factory: pytest.TempPathFactory, name: str, precision: dict[int, str]) -> dict[str, Any]:
    def compute() -> dict[str, Any]:
        records = shared_root(factory) / f"records-{name}"
        shutil.rmtree(records, ignore_errors=True)
        port = str(_free_port())
        mark = f"MULTINODE_TEST_MARK={uuid.uuid4().hex}"  # every process of both launches carries it
        procs, logs = {}, {}
        try:
            for node in (0, 1):
                cmd = [PY, "-m", "fp8doctor", "watch", "--records", str(records), "--format", "json",
                       "--merge-wait", MERGE_WAIT_S, "--", *TORCHRUN, "--nnodes", "2", "--node_rank", str(node),
                       "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", port,
                       "accelerate_script.py"]
                # Files, not pipes: nothing blocks on a full pipe while the other node is awaited.
                logs[node] = (tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+"))  # noqa: SIM115 - _read_log
                env = _env(ACCELERATE_MIXED_PRECISION=precision[node], MULTINODE_TEST_MARK=mark.split("=")[1])
                procs[node] = subprocess.Popen(cmd, cwd=SCRIPTS, env=env, stdout=logs[node][0],
                                               stderr=logs[node][1], text=True, preexec_fn=default_signals)
            _wait_while_progressing(procs, records)
            nodes = {}
            for node, proc in procs.items():
                out, err = (_read_log(f) for f in logs[node])
                nodes[str(node)] = {"rc": proc.returncode, "stdout": out, "stderr": err[-4000:]}
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()  # the lifeline takes each launch's group, and ranks in their own session with it
                proc.wait()
            deadline = time.monotonic() + 30
            while live_processes_with(mark) and time.monotonic() < deadline:
                time.sleep(0.2)
            left = live_processes_with(mark)
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        assert left == [], f"processes left behind by the two launches: {left}"
        text, js = _merge(records), _merge(records, "json")
        return {"records": str(records), "nodes": nodes, "merge_text": text.stdout, "merge_rc": text.returncode,
                "merge_json": js.stdout, "merge_stderr": text.stderr + js.stderr}

    run = computed_once(factory, f"multinode-{name}", compute)
    for node in run["nodes"].values():
        assert node["stdout"].startswith("{"), node["stderr"]
        node["result"] = json.loads(node["stdout"])
    run["job"] = json.loads(run["merge_json"])
    return run


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return _two_nodes(tmp_path_factory, "mixed", {0: "fp8", 1: "bf16"})


@pytest.fixture(scope="module")
def uniform(tmp_path_factory):
    return _two_nodes(tmp_path_factory, "uniform", {0: "fp8", 1: "fp8"})


def test_records_land_under_host_and_rank(mixed):
    root = Path(mixed["records"])
    (host_dir,) = [p for p in root.iterdir() if p.is_dir()]
    names = sorted(p.name for p in host_dir.iterdir())
    assert sum(n.startswith("0-") and n.endswith(".jsonl") for n in names) == 1
    assert sum(n.startswith("1-") and n.endswith(".jsonl") for n in names) == 1
    assert sum(n.startswith("main-") for n in names) == 2  # the two torchrun agents
    assert sum(n.startswith("watch-") and n.endswith(".json") for n in names) == 2
    markers = [json.loads(p.read_text()) for p in host_dir.glob("watch-*.json")]
    assert sorted((m["node"], m["state"], m["expected_watches"], m["leader"]) for m in markers) == [
        (0, "done", 2, True), (1, "done", 2, False)]


def test_mixed_job_names_the_bf16_node(mixed):
    job = mixed["job"]
    assert mixed["merge_rc"] == 1, mixed["merge_stderr"]
    assert job["verdict"] == "mixed"
    by_rank = {r["rank"]: r for r in job["ranks"]}
    assert sorted(by_rank) == [0, 1]
    assert (by_rank[0]["node"], by_rank[0]["verdict"]) == (0, "fp8-active")
    assert (by_rank[1]["node"], by_rank[1]["verdict"]) == (1, "silent-bf16")
    assert by_rank[0]["model"]["fp8_layers"] == 13 and by_rank[1]["model"]["fp8_layers"] == 0
    assert [(o["rank"], o["node"], o["verdict"]) for o in job["odd_ranks"]] == [(1, 1, "silent-bf16")]
    assert "rank 1 (node 1) silent-bf16" in job["reason"]
    diffs = {d["what"]: d["by_node"] for d in job["differences"]}
    assert diffs["ACCELERATE_MIXED_PRECISION"] == {"node 0": "fp8", "node 1": "bf16"}
    assert diffs["FP8 layers"] == {"node 0": "13", "node 1": "0"}
    assert "torch" not in diffs and "GPU" not in diffs  # same image, same (CPU) device on both "nodes"
    for r in job["ranks"]:
        assert r["versions"]["torchao"] and r["versions"]["accelerate"]
    text = mixed["merge_text"]
    assert "verdict: mixed: ranks disagree: rank 1 (node 1) silent-bf16; the other ranks fp8-active" in text
    assert "ACCELERATE_MIXED_PRECISION: node 0 fp8; node 1 bf16" in text
    assert "odd: rank 1 on node 1" in text


def test_rank0_watch_merges_when_both_nodes_are_done(mixed):
    leader, other = mixed["nodes"]["0"], mixed["nodes"]["1"]
    assert leader["rc"] == 1, leader["stderr"]  # its own rank was fp8-active, but the job is mixed
    assert leader["result"]["verdict"] == "fp8-active"
    assert leader["result"]["job"]["verdict"] == "mixed"
    assert [r["rank"] for r in leader["result"]["job"]["ranks"]] == [0, 1]
    assert other["rc"] == 1 and other["result"]["verdict"] == "silent-bf16"
    assert "job" not in other["result"]  # only the watch holding rank 0 merges


def test_uniform_job_is_fp8_active_exit_0(uniform):
    job = uniform["job"]
    assert uniform["merge_rc"] == 0, uniform["merge_text"] + uniform["merge_stderr"]
    assert job["verdict"] == "fp8-active" and job["odd_ranks"] == [] and job["differences"] == []
    assert [(r["rank"], r["node"], r["verdict"]) for r in job["ranks"]] == [(0, 0, "fp8-active"),
                                                                             (1, 1, "fp8-active")]
    assert uniform["nodes"]["0"]["rc"] == 0 and uniform["nodes"]["1"]["rc"] == 0
    assert "differs between nodes: nothing" in uniform["merge_text"]


def test_a_file_cut_mid_line_still_reports_every_complete_record(mixed, tmp_path):
    copy = tmp_path / "records"
    shutil.copytree(mixed["records"], copy)
    (rank1,) = copy.glob("*/1-*.jsonl")
    data = rank1.read_bytes()
    lines = data.split(b"\n")
    loss_at = [i for i, line in enumerate(lines) if b'"kind": "loss"' in line]
    cut_line = loss_at[2]  # die while writing the third loss
    keep = b"\n".join(lines[:cut_line]) + b"\n" + lines[cut_line][: len(lines[cut_line]) // 2]
    rank1.write_bytes(keep)
    complete, cut = read_record_file(rank1)
    assert (len(complete), cut) == (cut_line, 1)
    r = _merge(copy, "json")
    assert r.returncode == 1, r.stderr
    job = json.loads(r.stdout)
    (rank,) = [x for x in job["ranks"] if x["rank"] == 1]
    assert (rank["records"], rank["cut_lines"]) == (cut_line, 1)
    assert len(rank["losses"]) == 2  # the two losses written before the cut
    assert rank["verdict"] == "silent-bf16"  # its Accelerator and prepare records came before the cut
    assert job["cut_lines"] == 1 and job["verdict"] == "mixed"
    text = _merge(copy).stdout
    assert f"{rank['file']}: 1 cut line(s) ignored" in text


def test_merge_bad_input_is_one_line_exit_2(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    for target, words in ((tmp_path / "missing", "no such directory"), (afile, "not a directory"),
                          (empty, "no watch records in it")):
        r = _merge(target)
        assert r.returncode == 2, r
        assert r.stderr.count("\n") == 1 and words in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([PY, "-m", "fp8doctor", "watch", "--merge", str(empty), "--", "true"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "runs no command" in r.stderr
    r = subprocess.run([PY, "-m", "fp8doctor", "watch", "--records", str(afile), "--", "true"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().endswith("not a directory")


TORCHRUN_WORKER = {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "1",
                   "GROUP_WORLD_SIZE": "2"}
SRUN_TASK = {"SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NNODES": "2",
             "SLURM_NTASKS": "4"}


def test_identity_from_launcher_variables():
    assert identity(TORCHRUN_WORKER) == {"rank": 5, "local_rank": 1, "node": 1, "world_size": 8, "nodes": 2}
    assert identity(SRUN_TASK) == {"rank": 3, "local_rank": 1, "node": 1, "world_size": 4, "nodes": 2}
    # srun launching torchrun: the worker's own RANK wins over the task's SLURM_PROCID
    assert identity({**SRUN_TASK, **TORCHRUN_WORKER})["rank"] == 5
    assert identity({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "NODE_RANK": "1"})["nodes"] == 2
    assert identity({}) == {"rank": None, "local_rank": None, "node": None, "world_size": None, "nodes": None}


def test_watch_place_decides_node_expected_count_and_leader():
    worker0 = {**TORCHRUN_WORKER, "RANK": "0", "GROUP_RANK": "0"}
    assert watch_place({}, [{}, worker0]) == {"node": 0, "expected_watches": 2, "leader": True}
    assert watch_place({}, [{}, TORCHRUN_WORKER]) == {"node": 1, "expected_watches": 2, "leader": False}
    assert watch_place(SRUN_TASK, [{}]) == {"node": 1, "expected_watches": 4, "leader": False}
    assert watch_place({**SRUN_TASK, "SLURM_PROCID": "0", "SLURM_NODEID": "0", "SLURM_STEP_NUM_TASKS": "2"},
                       []) == {"node": 0, "expected_watches": 2, "leader": True}
    assert watch_place({}, [{}]) == {"node": None, "expected_watches": 1, "leader": True}  # plain python train.py


def _rank(rank: int, node: int, verdict: str, **extra: Any) -> dict[str, Any]:
    return {"rank": rank, "node": node, "host": f"h{node}", "pid": 100 + rank, "verdict": verdict,
            "reason": f"why {verdict}", **extra}


def test_job_verdict_names_the_minority_ranks():
    job = job_verdict([_rank(0, 0, "fp8-active"), _rank(1, 0, "fp8-active"), _rank(2, 1, "fp8-active"),
                       _rank(3, 1, "raised")])
    assert job["verdict"] == "mixed" and [o["rank"] for o in job["odd_ranks"]] == [3]
    assert job["reason"] == "ranks disagree: rank 3 (node 1) raised; the other ranks fp8-active"
    job = job_verdict([_rank(0, 0, "silent-bf16"), _rank(1, 0, "silent-bf16"), _rank(2, 1, "fp8-active")])
    assert [o["rank"] for o in job["odd_ranks"]] == [2]  # the majority defines what is usual
    job = job_verdict([_rank(0, 0, "silent-bf16"), _rank(1, 1, "silent-bf16")])
    assert (job["verdict"], job["odd_ranks"]) == ("silent-bf16", [])


def test_differences_between_nodes_from_rank_facts():
    ranks = [
        _rank(0, 0, "fp8-active", versions={"torch": "2.9.0", "transformer-engine": "2.9.0"},
              capability="NVIDIA H100 cc 9.0", accelerate_env={"ACCELERATE_MIXED_PRECISION": "fp8"},
              model={"fp8_layers": 13}),
        _rank(1, 1, "fp8-active", versions={"torch": "2.9.0", "transformer-engine": "2.8.0"},
              capability="NVIDIA A100 cc 8.0", accelerate_env={"ACCELERATE_MIXED_PRECISION": "fp8",
                                                                 "ACCELERATE_FP8_BACKEND": "TE"},
              model={"fp8_layers": 13}),
    ]
    diffs = {d["what"]: d["by_node"] for d in differences(ranks)}
    assert diffs == {"TE": {"node 0": "2.9.0", "node 1": "2.8.0"},
                     "GPU": {"node 0": "NVIDIA H100 cc 9.0", "node 1": "NVIDIA A100 cc 8.0"},
                     "ACCELERATE_FP8_BACKEND": {"node 0": "-", "node 1": "TE"}}
