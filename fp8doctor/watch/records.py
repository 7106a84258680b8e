"""Records that travel (`fp8doctor watch --records DIR`): their layout, rank/node identity, whole-line appends,
the per-watch state marker, and reading a file whose writer died mid-line.

Layout: DIR/<host>/<rank>-<pid>.jsonl, one file per observed process ("main" instead of a rank for processes no
launcher gave one: the launcher itself, helper scripts), and DIR/<host>/watch-<pid>.json, one marker per
`fp8doctor watch` process, rewritten atomically from {"state": "running"} to {"state": "done", ...}.

Standard library only: the observer imports this module inside every watched process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECORDS_ENV = "FP8DOCTOR_WATCH_RECORDS"  # "1": name record files <rank>-<pid>.jsonl (else proc-<pid>.jsonl)
WATCH_ID_ENV = "FP8DOCTOR_WATCH_ID"  # which `fp8doctor watch` process a record file belongs to
RECORD_GLOB = "*.jsonl"
MARKER_GLOB = "watch-*.json"
# The launchers' own identity variables: torchrun / accelerate launch (RANK, LOCAL_RANK, GROUP_RANK, ...),
# some wrappers' NODE_RANK, and Slurm's srun (SLURM_*).
IDENTITY_ENV = (
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "GROUP_WORLD_SIZE",
    "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NNODES", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS",
    "SLURM_JOB_ID",
)


MAX_WORLD = 1 << 20  # ranks, nodes and world sizes above this are no real job's (a forged record's 10**9)


def _first_int(env: Mapping[str, Any], names: tuple[str, ...], lo: int = 0) -> int | None:
    """The first of `names` that holds a whole number in [lo, MAX_WORLD] (a rank, a size, a node)."""
    for name in names:
        text = str(env.get(name, "")).strip()
        if len(text) > 8 or not text.isdigit():  # isdigit: no sign, no "1e9", no "nan"
            continue
        value = int(text)
        if lo <= value <= MAX_WORLD:
            return value
    return None


def identity(env: Mapping[str, Any]) -> dict[str, int | None]:
    """{rank, local_rank, node, world_size, nodes} from a process's launcher variables (None where unknown).

    torchrun's variables win over Slurm's: under `srun torchrun ...` a worker inherits SLURM_PROCID of the
    launcher task, while RANK is its own."""
    world = _first_int(env, ("WORLD_SIZE", "SLURM_NTASKS"), lo=1)
    local_world = _first_int(env, ("LOCAL_WORLD_SIZE",), lo=1)
    nodes = _first_int(env, ("GROUP_WORLD_SIZE", "SLURM_NNODES"), lo=1)
    if nodes is None and world and local_world and world % local_world == 0:
        nodes = world // local_world
    return {
        "rank": _first_int(env, ("RANK", "SLURM_PROCID")),
        "local_rank": _first_int(env, ("LOCAL_RANK", "SLURM_LOCALID")),
        "node": _first_int(env, ("GROUP_RANK", "NODE_RANK", "SLURM_NODEID")),
        "world_size": world,
        "nodes": nodes,
    }


def host_name() -> str:
    """This machine's name as a directory name."""
    return (os.uname().nodename or "localhost").replace(os.sep, "_")


def record_file_name(env: Mapping[str, Any], pid: int) -> str:
    rank = identity(env)["rank"]
    return f"{'main' if rank is None else rank}-{pid}.jsonl"


def open_append(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def append_line(fd: int, line: str) -> None:
    """Append one whole line with one write(2) on an O_APPEND descriptor: a process killed mid-write leaves at
    most this one line cut, and every earlier line intact."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    while data:
        written = os.write(fd, data)
        data = data[written:]


# ---- the per-watch marker ----------------------------------------------------------------------------------------


def marker_path(host_dir: Path, pid: int) -> Path:
    return host_dir / f"watch-{pid}.json"


def write_marker(path: Path, data: Mapping[str, Any]) -> None:
    """Replace the marker atomically (write a temporary file, then rename), so a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dict(data), default=str), encoding="utf-8")
    os.replace(tmp, path)


def watch_place(env: Mapping[str, str], rank_envs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Where one `fp8doctor watch` stands in the job, from its own environment (srun puts SLURM_* there) or else
    from the ranks it launched (torchrun gives each GROUP_RANK and GROUP_WORLD_SIZE):
    {node, expected_watches (how many watch processes the job has; None if unknown), leader (holds rank 0)}."""
    own = identity(env)
    if "SLURM_PROCID" in env:  # `srun fp8doctor watch ...`: one watch per Slurm task
        expected = _first_int(env, ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"), lo=1)
        return {"node": own["node"], "expected_watches": expected, "leader": own["rank"] == 0}
    ranks = [identity(e) for e in rank_envs]
    nodes = {r["node"] for r in ranks if r["node"] is not None}
    counts = {r["nodes"] for r in ranks if r["nodes"] is not None}
    node = nodes.pop() if len(nodes) == 1 else own["node"]
    expected = max(counts) if counts else own["nodes"]
    if not ranks or all(r["rank"] is None for r in ranks):  # a plain, single-process command
        return {"node": node, "expected_watches": expected or 1, "leader": node in (None, 0)}
    return {"node": node, "expected_watches": expected, "leader": any(r["rank"] == 0 for r in ranks)}
