"""`fp8doctor watch --merge DIR`: one verdict for a multi-node job from the records every node's watch left in DIR.

Each `fp8doctor watch --records DIR` process (one per node, or one per Slurm task) is judged on its own processes,
as on one machine; the job then puts every rank side by side: per node, per rank, the verdict and the versions
it imported, and what differs between nodes. Verdicts that differ across ranks make the job "mixed", a failure
that names the odd ranks.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from fp8doctor.system.errors import UsageError
from fp8doctor.watch.collect import process_from_records, sort_processes
from fp8doctor.watch.record_check import read_markers, read_record_file, record_files
from fp8doctor.watch.verdicts import FP8_ACTIVE, overall_verdict

MIXED = "mixed"  # the job's verdict when its ranks' verdicts differ
VERSION_NAMES = {"torch": "torch", "accelerate": "accelerate", "transformers": "transformers", "torchao": "torchao",
                 "transformer-engine": "TE"}
POLL_S = 0.5


def records_root(directory: str | Path) -> Path:
    """DIR, checked: it exists, is a directory and holds record files (else UsageError: one line, exit 2)."""
    root = Path(directory)
    if not root.exists():
        raise UsageError(f"--merge {directory}: no such directory")
    if not root.is_dir():
        raise UsageError(f"--merge {directory}: not a directory")
    if not record_files(root):
        raise UsageError(f"--merge {directory}: no watch records in it (expected <host>/<rank>-<pid>.jsonl files "
                         "written by `fp8doctor watch --records DIR -- CMD`)")
    return root


def load_processes(root: Path, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Every process of every node, with where its records came from and how many lines were cut; a file that is
    no regular file inside root, or too big, is named in `skipped` instead."""
    procs = []
    for path in record_files(root):
        try:
            recs, cut = read_record_file(path, root)
        except UsageError as exc:
            if skipped is not None:
                skipped.append(str(exc))
            continue
        proc = process_from_records(recs)
        if proc["pid"] is None:
            continue
        proc.update(file=str(path.relative_to(root)), records=len(recs), cut_lines=cut,
                    host=proc.get("host") or path.parent.name)
        procs.append(proc)
    return sort_processes(procs)


def _versions_text(versions: dict[str, Any]) -> str:
    return ", ".join(f"{VERSION_NAMES.get(k, k)} {v}" for k, v in versions.items() if v) or "-"


def _capability(proc: dict[str, Any]) -> str | None:
    dev = proc.get("device") or {}
    if not dev:
        return None
    return f"{dev.get('name')} cc {dev['capability']}" if dev.get("capability") else str(dev.get("type"))


def _node_key(rank: dict[str, Any]) -> tuple[int, Any]:
    node = rank.get("node")
    return (0, node) if isinstance(node, int) else (1, str(node))


def node_label(node: Any) -> str:
    return f"node {node}" if isinstance(node, int) else f"host {node}"


def _odd_ranks(ranks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ranks whose verdict is not the job's usual one (the most common; on a tie, fp8-active)."""
    counts = Counter(r["verdict"] for r in ranks)
    top = max(counts.values())
    usual = FP8_ACTIVE if counts.get(FP8_ACTIVE) == top else max(counts, key=lambda v: counts[v])
    return [r for r in ranks if r["verdict"] != usual]


def differences(ranks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What differs between nodes: versions imported, GPU capability, ACCELERATE_* variables, FP8 layer counts;
    each as {"what", "by_node": {node label: value}}, values joined with " | " where a node's ranks disagree."""
    facts: dict[str, dict[str, set[str]]] = {}

    def add(what: str, node: str, value: Any) -> None:
        facts.setdefault(what, {}).setdefault(node, set()).add("-" if value is None else str(value))

    env_names = sorted(set().union(*[r.get("accelerate_env") or {} for r in ranks]))  # once, not once per rank
    for r in ranks:
        node = node_label(r["node"])
        for dist, version in (r.get("versions") or {}).items():
            add(VERSION_NAMES.get(dist, dist), node, version)
        add("GPU", node, r.get("capability"))
        env = r.get("accelerate_env") or {}
        for name in env_names:
            add(name, node, env.get(name))
        model = r.get("model") or {}
        add("FP8 layers", node, model.get("fp8_layers") if model else None)
    out = []
    for what, by_node in facts.items():
        if len({" | ".join(sorted(v)) for v in by_node.values()}) > 1:
            out.append({"what": what, "by_node": {n: " | ".join(sorted(v)) for n, v in by_node.items()}})
    return out


def merge(directory: str | Path) -> dict[str, Any]:
    """The job's result: {verdict, reason, odd_ranks, ranks, nodes, differences, helpers, markers, ...}."""
    root = records_root(directory)
    skipped: list[str] = []
    procs = load_processes(root, skipped)
    markers = read_markers(root, skipped)
    marker_node = {m.get("watch_id"): m.get("node") for m in markers}
    by_watch: dict[Any, list[dict[str, Any]]] = {}
    for p in procs:
        by_watch.setdefault(p.get("watch_id") or p.get("host"), []).append(p)
    ranks: list[dict[str, Any]] = []
    helpers: list[dict[str, Any]] = []
    for watch_id, group in by_watch.items():
        try:
            judged = overall_verdict(group)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            # Records that passed the type checks but still do not fit together (forged, or from another version).
            skipped += [f"{p.get('file')}: records that cannot be judged ({type(exc).__name__})" for p in group]
            continue
        by_pid = {p["pid"]: p for p in group}
        for r in judged["ranks"]:
            p = by_pid[r["pid"]]
            node = p.get("node")
            if node is None:
                node = marker_node.get(watch_id)
            ranks.append({
                **r, "node": node if node is not None else p.get("host"), "host": p.get("host"),
                "watch_id": watch_id, "versions": p.get("versions") or {}, "capability": _capability(p),
                "accelerate_env": p.get("accelerate_env") or {}, "world_size": p.get("world_size"),
                "file": p.get("file"), "records": p.get("records"), "cut_lines": p.get("cut_lines"),
                "losses": [x.get("value", (x.get("values") or {}).get("loss")) for x in p.get("losses") or []],
            })
        helpers += [{**h, "host": by_pid[h["pid"]].get("host"), "file": by_pid[h["pid"]].get("file")}
                    for h in judged["helpers"]]
    ranks.sort(key=lambda r: (r.get("rank") is None, r.get("rank") or 0, _node_key(r), r.get("pid") or 0))
    for r in ranks:
        r["versions_text"] = _versions_text(r["versions"])
    return {
        "records_dir": str(root),
        **job_verdict(ranks),
        "ranks": ranks,
        "nodes": sorted({str(r["node"]) for r in ranks}),
        "differences": differences(ranks),
        "helpers": helpers,
        "markers": [{k: m.get(k) for k in ("marker", "host", "node", "state", "exit_code", "expected_watches")}
                    for m in markers],
        "expected_watches": max((m["expected_watches"] for m in markers if m.get("expected_watches")), default=None),
        **missing_ranks(ranks),
        "files": len(procs),
        "skipped_files": skipped,
        "cut_lines": sum(p.get("cut_lines") or 0 for p in procs),
    }


MAX_LISTED = 1000  # missing ranks named one by one; the count says the rest


def missing_ranks(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """{missing_ranks: the first MAX_LISTED ranks the job's world size promises but no record shows,
    missing_count: how many}. World sizes are bounded when read (records.MAX_WORLD)."""
    sizes = [r["world_size"] for r in ranks if isinstance(r.get("world_size"), int)]
    seen = {r["rank"] for r in ranks if isinstance(r.get("rank"), int)}
    world = max(sizes, default=0)
    count = world - len({k for k in seen if 0 <= k < world})
    listed = []
    for k in range(world):
        if len(listed) >= min(count, MAX_LISTED):
            break
        if k not in seen:
            listed.append(k)
    return {"missing_ranks": listed, "missing_count": count}


def job_verdict(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    if not ranks:
        return {"verdict": "no-accelerator-seen", "reason": "no process in the records built an accelerate.Accelerator",
                "odd_ranks": []}
    verdicts = {r["verdict"] for r in ranks}
    if len(verdicts) == 1:
        (verdict,) = verdicts
        reason = ranks[0]["reason"] if len(ranks) == 1 else f"all {len(ranks)} ranks: {ranks[0]['reason']}"
        return {"verdict": verdict, "reason": reason, "odd_ranks": []}
    odd = _odd_ranks(ranks)
    odd_ids = {id(r) for r in odd}
    usual = next(r["verdict"] for r in ranks if id(r) not in odd_ids)
    named = "; ".join(f"{rank_label(r)} ({node_label(r['node'])}) {r['verdict']}" for r in odd)
    return {"verdict": MIXED, "reason": f"ranks disagree: {named}; the other ranks {usual}",
            "odd_ranks": [{"rank": r.get("rank"), "node": r.get("node"), "host": r.get("host"), "pid": r.get("pid"),
                           "verdict": r["verdict"], "reason": r.get("reason")} for r in odd]}


def rank_label(r: dict[str, Any]) -> str:
    return f"rank {r['rank']}" if r.get("rank") is not None else f"pid {r.get('pid')}"


def exit_code(job: dict[str, Any]) -> int:
    """0 when every rank was fp8-active and no rank is missing, else 1."""
    return 0 if job.get("verdict") == FP8_ACTIVE and not job.get("missing_ranks") else 1


def all_done(directory: str | Path, expected: int | None) -> bool:
    """True when every watch marker in DIR says done and there are at least `expected` of them."""
    markers = read_markers(Path(directory))
    if not markers or any(m.get("state") != "done" for m in markers):
        return False
    return expected is None or len(markers) >= expected


def wait_until_done(directory: str | Path, expected: int | None, wait_s: float) -> bool:
    """Poll the markers for up to wait_s seconds (the other nodes usually end within seconds of rank 0's)."""
    deadline = time.monotonic() + wait_s
    while True:
        if all_done(directory, expected):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)

