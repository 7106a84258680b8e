"""`watch --baseline RECORD`: the watched FP8 run's losses and gradient norms, rank by rank, against those of the
same command watched in bf16 (RECORD: that watch's `--format json` report), under the tolerances of
knowledge/divergence.py (fp8doctor.divergence judges). RECORD is untrusted input: read capped, type-checked, and
refused with one line (exit 2) before the command runs."""

from __future__ import annotations

import json
from typing import Any

from fp8doctor.divergence import judge
from fp8doctor.findings import Level
from fp8doctor.knowledge.divergence import tolerance
from fp8doctor.system import safeio
from fp8doctor.system.errors import UsageError
from fp8doctor.verdicts import FP8_ACTIVE, FP8_NOT_TRAINED

MAX_BASELINE_BYTES = 256 << 20
SOURCE = "accelerator.backward"  # the per-step losses and gradient norms compared (Trainer logs average them)


def _series(proc: dict[str, Any], key: str) -> list[Any]:
    rows = proc.get(key) if isinstance(proc.get(key), list) else []
    return [r.get("value") for r in rows if isinstance(r, dict) and r.get("source") == SOURCE]


def _rank_of(proc: dict[str, Any]) -> int:
    rank = proc.get("rank")
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else 0


def series_by_rank(report: dict[str, Any]) -> dict[int, dict[str, list[Any]]]:
    """{rank: {"losses", "grad_norms"}} of the processes of a watch report that recorded losses."""
    out: dict[int, dict[str, list[Any]]] = {}
    for proc in report.get("processes") or []:
        if isinstance(proc, dict) and _series(proc, "losses"):
            out.setdefault(_rank_of(proc), {"losses": _series(proc, "losses"),
                                            "grad_norms": _series(proc, "grad_norms")})
    return out


def load(path: str) -> dict[str, Any]:
    """The bf16 watch report at `path`, with its per-rank series; UsageError for anything else."""
    raw = safeio.read_capped(path, MAX_BASELINE_BYTES, "a --baseline watch report")
    try:
        report = safeio.bounded(json.loads(raw))
    except (ValueError, RecursionError):
        raise UsageError(f"{path}: not JSON (give the `fp8doctor watch --format json` report of the bf16 run)") \
            from None
    if not isinstance(report, dict) or not isinstance(report.get("processes"), list) or "verdict" not in report:
        raise UsageError(f"{path}: not an `fp8doctor watch --format json` report (no processes and verdict)")
    if report.get("verdict") in (FP8_ACTIVE, FP8_NOT_TRAINED):
        raise UsageError(f"{path}: that run was {report['verdict']} (it ran FP8); the baseline must be the same "
                         "command in bf16")
    series = series_by_rank(report)
    if not series:
        raise UsageError(f"{path}: no process of that run recorded a loss through accelerator.backward")
    return {"path": path, "series": series}


def _backend(rank: dict[str, Any]) -> str:
    acc = rank.get("accelerator") if isinstance(rank.get("accelerator"), dict) else {}
    return str((acc.get("result") or {}).get("fp8_backend") or "AO")


def compare(result: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """{level, baseline, ranks: [{rank, level, detail, details}]}: the worst rank's level."""
    mine = series_by_rank(result)
    backends = {_rank_of(r): _backend(r) for r in result.get("ranks") or [] if isinstance(r, dict)}
    rows = []
    for rank in sorted(set(mine) | set(baseline["series"])):
        if rank not in mine or rank not in baseline["series"]:
            where = "this run" if rank not in mine else "the baseline"
            rows.append({"rank": rank, "level": Level.SKIP.value, "detail": f"no losses recorded by {where}",
                         "details": {}})
            continue
        a, b = mine[rank], baseline["series"][rank]
        level, detail, details = judge(a["losses"], b["losses"], a["grad_norms"], b["grad_norms"],
                                       tolerance(backends.get(rank, "AO")))
        rows.append({"rank": rank, "level": level.value, "detail": detail, "details": details})
    order = [Level.FAIL.value, Level.WARN.value, Level.OK.value, Level.SKIP.value]
    worst = min((r["level"] for r in rows), key=order.index, default=Level.SKIP.value)
    return {"level": worst, "baseline": baseline["path"], "ranks": rows}


def lines(divergence: dict[str, Any] | None, fmt: str) -> list[str]:
    if not divergence:
        return []
    head = f"divergence vs the bf16 baseline {divergence['baseline']}: {divergence['level']}"
    body = [f"rank {r['rank']}: {r['level']}: {r['detail']}" for r in divergence["ranks"]]
    if fmt == "md":
        return ["", f"**{head}**", ""] + [f"- {line}" for line in body]
    return ["", head] + [f"  {line}" for line in body]
