"""Round three (issue 20): watch record and marker files are untrusted input. `watch --merge DIR` reads each
through the safe reader (regular files inside DIR only, size cap, never blocking), type-checks and bounds every
field, escapes text, and stays linear in the number of ranks. Every adversarial input is built here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fp8doctor.watch.merge import differences, merge
from fp8doctor.watch.record_check import check_record, parse_records
from fp8doctor.watch.records import MAX_WORLD, identity

PY = sys.executable


def fp8doctor(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run([PY, "-m", "fp8doctor", *args], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p


def process(pid: int, rank: int | None = 0, world: str = "2", host: str = "node-a", **extra: object) -> dict:
    rank_env = {"WORLD_SIZE": world} if rank is None else {"RANK": str(rank), "WORLD_SIZE": world}
    return {"kind": "process", "pid": pid, "ppid": 1, "argv": ["train.py"], "host": host, "watch_id": "w1",
            "rank_env": rank_env, "env_at_start": {}, "accelerate_env": {}, **extra}


def accelerator(mp: str = "bf16") -> dict:
    return {"kind": "accelerator", "id": 0, "arg_mixed_precision": mp, "handlers": [], "fp8_handlers": [],
            "env": {}, "result": {"mixed_precision": mp, "fp8_enabled": False}}


def write_records(root: Path, host: str, name: str, records: list[dict]) -> Path:
    folder = root / host
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    root = tmp_path / "records"
    write_records(root, "node-a", "0-100.jsonl", [process(100, 0), accelerator()])
    write_records(root, "node-a", "1-101.jsonl", [process(101, 1), accelerator()])
    return root


def test_fifo_and_device_records_are_skipped_not_read(job_dir: Path, tmp_path: Path) -> None:
    """Before: a FIFO named like a record hung `--merge` forever; a symlink to /dev/zero read until MemoryError."""
    os.mkfifo(job_dir / "node-a" / "2-102.jsonl")
    os.symlink("/dev/zero", job_dir / "node-a" / "3-103.jsonl")
    outside = tmp_path / "outside.jsonl"
    outside.write_text(json.dumps(process(104, 0, host="elsewhere")) + "\n")
    os.symlink(outside, job_dir / "node-a" / "4-104.jsonl")
    os.mkfifo(job_dir / "node-a" / "watch-9.json")
    r = fp8doctor("watch", "--merge", str(job_dir), "--format", "json", timeout=60)
    assert r.returncode == 1, r.stderr
    job = json.loads(r.stdout)
    assert sorted(x["pid"] for x in job["ranks"]) == [100, 101]
    skipped = "\n".join(job["skipped_files"])
    assert skipped.count("FIFO") == 2 and skipped.count("points outside") == 2, skipped
    assert len(job["skipped_files"]) == 4


def test_forged_world_size_and_ranks_are_bounded(job_dir: Path) -> None:
    """Before: WORLD_SIZE=10**9 in a record built range(10**9) (MemoryError)."""
    write_records(job_dir, "node-b", "0-200.jsonl", [process(200, 0, world="1000000000")])
    write_records(job_dir, "node-b", "7-201.jsonl", [process(201, 7, world=str(MAX_WORLD))])
    job = merge(job_dir)
    assert job["missing_count"] == MAX_WORLD - 3 and len(job["missing_ranks"]) == 1000
    assert identity({"RANK": "-1", "WORLD_SIZE": "1e9"}) == {"rank": None, "local_rank": None, "node": None,
                                                             "world_size": None, "nodes": None}
    assert identity({"RANK": "3", "WORLD_SIZE": str(MAX_WORLD + 1)})["world_size"] is None


WRONG_TYPES = [
    {"kind": "process", "pid": "100", "ppid": [], "argv": "train.py", "host": {"x": 1}, "rank_env": ["RANK"],
     "accelerate_env": "ACCELERATE_MIXED_PRECISION=fp8", "watch_id": 7},
    {"kind": "accelerator", "id": "zero", "result": "fp8", "env": 3, "handlers": "TERecipeKwargs"},
    {"kind": "prepare", "accelerator": 0, "models": ["not a dict", 3, None, {"fp8_layers": "x"}], "error": 5},
    {"kind": "forwards", "accelerator": 0, "forwards": "many", "counter": [1], "arg_index": -4},
    {"kind": "loss", "value": {"nested": 1}, "t": "yesterday"},
    {"kind": "versions", "versions": ["torch"]},
    {"kind": "device", "capability": 9.0, "name": None},
    {"kind": 42},
    [1, 2, 3],
    "just a string",
]


def test_wrong_typed_fields_never_crash_the_merge(job_dir: Path) -> None:
    """Before: a field of the wrong type ended `--merge` in a traceback."""
    good = process(300, 0, host="node-c")
    write_records(job_dir, "node-c", "0-300.jsonl", [good, *WRONG_TYPES])
    write_records(job_dir, "node-d", "0-301.jsonl", WRONG_TYPES)
    (job_dir / "node-c" / "watch-1.json").write_text(json.dumps(
        {"state": ["done"], "node": "zero", "expected_watches": 10**12, "exit_code": "x", "started": float("1e300")}))
    for fmt in ("text", "md", "json"):
        r = fp8doctor("watch", "--merge", str(job_dir), "--format", fmt)
        assert r.returncode == 1, r.stderr
    job = merge(job_dir)
    assert job["expected_watches"] is None
    checked = check_record(WRONG_TYPES[0])
    assert set(checked) == {"kind"}  # every field of the wrong type dropped
    assert check_record(WRONG_TYPES[2])["models"] == [{"fp8_layers": "x"}]
    records, cut = parse_records(b"\n".join(json.dumps(r).encode() for r in WRONG_TYPES) + b"\n[[[[[\n")
    assert (len(records), cut) == (8, 3)


def test_host_names_and_errors_cannot_forge_lines(job_dir: Path) -> None:
    """Before: a host name with a newline or ESC from a record was printed raw."""
    forged = "evil\n[✓] rank 9 fp8-active\x1b[2J\u202e"
    acc = {**accelerator(), "error": {"type": "ValueError", "message": "bad\n\x1b[31mforged line"}}
    write_records(job_dir, "node-e", "0-400.jsonl", [process(400, 0, host=forged), acc])
    for fmt in ("text", "md"):
        r = fp8doctor("watch", "--merge", str(job_dir), "--format", fmt)
        assert r.returncode == 1
        for raw in ("\x1b", "\u202e", "\n[✓] rank 9", "\nforged"):
            assert raw not in r.stdout, (fmt, raw)
        assert "evil\\n[✓] rank 9" in r.stdout


def test_huge_strings_and_lists_are_cut(job_dir: Path) -> None:
    big = process(500, 0, host="h" * 100_000, argv=["x" * 100_000] * 5000)
    rec = check_record(big)
    assert len(rec["host"]) == 4096 and len(rec["argv"]) == 1000 and len(rec["argv"][0]) == 4096


def test_differences_are_linear_in_ranks() -> None:
    """Before: every rank re-unioned every rank's ACCELERATE_* names (20,000 ranks: minutes)."""
    import time

    ranks = [{"node": k // 8, "versions": {"torch": "2.13.0"}, "capability": "cpu", "model": {},
              "accelerate_env": {"ACCELERATE_MIXED_PRECISION": "fp8" if k else "bf16"}} for k in range(20_000)]
    t0 = time.monotonic()
    diffs = differences(ranks)
    assert time.monotonic() - t0 < 30  # a hang guard only; benchmarks/merge_speed.py measures it
    assert [d["what"] for d in diffs] == ["ACCELERATE_MIXED_PRECISION"]


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "-1"])
def test_merge_wait_must_be_finite_and_bounded(value: str, tmp_path: Path) -> None:
    """Before: `--merge-wait nan` or `1e308` waited forever on a stale marker."""
    r = fp8doctor("watch", "--records", str(tmp_path), "--merge-wait", value, "--", "true", timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--merge-wait" in r.stderr, r.stderr
