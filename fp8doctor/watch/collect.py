"""Read the observer's JSON-lines files (one per process) into one plain dict per process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def process_from_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold one process's records (in file order) into {pid, rank, accelerators[], losses[], ...}."""
    proc: dict[str, Any] = {
        "pid": None, "ppid": None, "argv": [], "rank": None, "local_rank": None, "world_size": None,
        "env_at_start": {}, "accelerators": [], "training_args": [], "losses": [], "versions": {},
        "observer_errors": [], "exited": False, "orphan_prepares": [],
    }
    by_id: dict[Any, dict[str, Any]] = {}
    for rec in records:
        kind = rec.get("kind")
        if kind == "process":
            rank_env = rec.get("rank_env") or {}
            proc.update(pid=rec.get("pid"), ppid=rec.get("ppid"), argv=rec.get("argv") or [],
                        env_at_start=rec.get("env_at_start") or {}, rank=_int(rank_env.get("RANK")),
                        local_rank=_int(rank_env.get("LOCAL_RANK")), world_size=_int(rank_env.get("WORLD_SIZE")))
        elif kind == "accelerator":
            acc = {k: v for k, v in rec.items() if k not in ("kind", "t")}
            acc.update(prepares=[], forwards=[])
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
        elif kind == "training_args":
            proc["training_args"].append({k: v for k, v in rec.items() if k not in ("kind", "t")})
        elif kind == "loss":
            proc["losses"].append({k: v for k, v in rec.items() if k not in ("kind", "t")})
        elif kind == "versions":
            proc["versions"] = rec.get("versions") or {}
        elif kind == "observer_error":
            proc["observer_errors"].append(f"{rec.get('where')}: {rec.get('error')}")
        elif kind == "exit":
            proc["exited"] = True
    return proc


def read_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a process killed mid-write leaves a partial last line
        if isinstance(rec, dict):
            records.append(rec)
    return records


def collect(directory: str | Path) -> list[dict[str, Any]]:
    """Every observed process, ordered by rank (ranked ones first) then pid."""
    procs = [process_from_records(read_records(p)) for p in sorted(Path(directory).glob("proc-*.jsonl"))]
    procs = [p for p in procs if p["pid"] is not None]
    return sorted(procs, key=lambda p: (p["rank"] is None, p["rank"] or 0, p["pid"]))
