"""Read the observer's JSON-lines files (one per process) into one plain dict per process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fp8doctor.system.errors import UsageError
from fp8doctor.watch.record_check import read_record_file
from fp8doctor.watch.records import RECORD_GLOB, identity


def process_from_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold one process's records (in file order) into {pid, rank, accelerators[], losses[], ...}."""
    proc: dict[str, Any] = {
        "pid": None, "ppid": None, "argv": [], "rank": None, "local_rank": None, "world_size": None,
        "env_at_start": {}, "accelerators": [], "training_args": [], "losses": [], "grad_norms": [], "versions": {},
        "observer_errors": [], "exited": False, "orphan_prepares": [],
        "host": None, "watch_id": None, "rank_env": {}, "node": None, "accelerate_env": {}, "device": None,
        "executable": None, "exception": None, "exec_from": [],
    }
    by_id: dict[Any, dict[str, Any]] = {}
    for rec in records:
        kind = rec.get("kind")
        if kind == "process":
            if proc["pid"] is not None:  # the same pid again: the process exec'd another program (axolotl's CLI)
                proc["exec_from"].append({"argv": proc["argv"], "executable": proc["executable"]})
            rank_env = rec.get("rank_env") or {}
            who = identity(rank_env)
            proc.update(pid=rec.get("pid"), ppid=rec.get("ppid"), argv=rec.get("argv") or [],
                        env_at_start=rec.get("env_at_start") or {}, rank=who["rank"], local_rank=who["local_rank"],
                        world_size=who["world_size"], node=who["node"], rank_env=rank_env, host=rec.get("host"),
                        watch_id=rec.get("watch_id"), accelerate_env=rec.get("accelerate_env") or {},
                        executable=rec.get("executable"))
        elif kind == "accelerator":
            acc = {k: v for k, v in rec.items() if k not in ("kind", "t")}
            acc.update(prepares=[], forwards=[], eval_forwards=[], numerics=[])
            proc["accelerators"].append(acc)
            by_id[rec.get("id")] = acc
        elif kind == "prepare":
            target = by_id.get(rec.get("accelerator"))
            entry = {"models": rec.get("models") or [], "error": rec.get("error")}
            (target["prepares"] if target else proc["orphan_prepares"]).append(entry)
        elif kind == "forwards":
            target = by_id.get(rec.get("accelerator"))
            if target is not None:
                target["forwards"].append({k: v for k, v in rec.items() if k not in ("kind", "t", "accelerator")})
        elif kind in ("eval_forward", "numerics"):
            target = by_id.get(rec.get("accelerator"))
            if target is not None:
                key = "eval_forwards" if kind == "eval_forward" else "numerics"
                target[key].append({k: v for k, v in rec.items() if k not in ("kind", "t", "accelerator")})
        elif kind == "training_args":
            proc["training_args"].append({k: v for k, v in rec.items() if k not in ("kind", "t")})
        elif kind in ("loss", "grad_norm"):
            proc["losses" if kind == "loss" else "grad_norms"].append({k: v for k, v in rec.items()
                                                                       if k not in ("kind", "t")})
        elif kind == "device":
            proc["device"] = {k: v for k, v in rec.items() if k not in ("kind", "t")}
        elif kind == "versions":
            proc["versions"] = rec.get("versions") or {}
        elif kind == "observer_error":
            proc["observer_errors"].append(f"{rec.get('where')}: {rec.get('error')}")
        elif kind == "exception":
            proc["exception"] = {"type": rec.get("type"), "message": rec.get("message")}
        elif kind == "exit":
            proc["exited"] = True
    return proc


def read_records(path: Path) -> list[dict[str, Any]]:
    """A process's checked records (a partial last line skipped); none when the file is no regular file."""
    try:
        return read_record_file(path)[0]
    except UsageError:
        return []


def sort_processes(procs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ranked processes first, by rank, then the others by pid."""
    return sorted(procs, key=lambda p: (p["rank"] is None, p["rank"] or 0, p["pid"]))


def collect(directory: str | Path, watch_id: str | None = None) -> list[dict[str, Any]]:
    """Every observed process (only those of one `watch` when watch_id is given), ordered by rank then pid."""
    procs = [process_from_records(read_records(p)) for p in sorted(Path(directory).glob(RECORD_GLOB))]
    procs = [p for p in procs if p["pid"] is not None and (watch_id is None or p["watch_id"] == watch_id)]
    return sort_processes(procs)
