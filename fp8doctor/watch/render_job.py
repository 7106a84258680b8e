"""Render a merged multi-node job (`fp8doctor watch --merge DIR`) as text, Markdown or JSON, like a single watch
result (same cells, same redaction)."""

from __future__ import annotations

import json
from typing import Any

from tabulate import tabulate

from fp8doctor.redact import redact
from fp8doctor.render.controls import escape_obj
from fp8doctor.watch.merge import node_label, rank_label
from fp8doctor.watch.render import FORMATS, _acc_cell, _forwards_cell, _layers_cell

HEADERS = ["node", "host", "rank", "pid", "verdict", "Accelerator (asked -> got)", "FP8/eligible", "FP8 forwards",
           "versions imported", "records"]


def _node_cell(node: Any) -> str:
    return str(node) if isinstance(node, int) else f"({node})"


def _records_cell(r: dict[str, Any]) -> str:
    cut = r.get("cut_lines") or 0
    return f"{r.get('records')}" + (f" (+{cut} cut)" if cut else "")


def job_rows(job: dict[str, Any]) -> list[list[str]]:
    return [[_node_cell(r.get("node")), str(r.get("host")), "-" if r.get("rank") is None else str(r["rank"]),
             str(r.get("pid")), r["verdict"], _acc_cell(r), _layers_cell(r), _forwards_cell(r),
             r.get("versions_text") or "-", _records_cell(r)] for r in job.get("ranks") or []]


def summary_line(job: dict[str, Any]) -> str:
    markers = job.get("markers") or []
    done = sum(1 for m in markers if m.get("state") == "done")
    expected = job.get("expected_watches")
    watches = f"{done} of {expected if expected else len(markers)} watch processes done"
    nodes = len(job.get("nodes") or [])
    return (f"{job.get('records_dir')}: {nodes} node{'s' if nodes != 1 else ''}, {len(job.get('ranks') or [])} "
            f"ranks, {job.get('files')} record files, {watches}")


def detail_lines(job: dict[str, Any]) -> list[str]:
    lines = []
    for r in job.get("odd_ranks") or []:
        lines.append(f"odd: {rank_label(r)} on {node_label(r.get('node'))} ({r.get('host')}): {r['verdict']}: "
                     f"{r.get('reason')}")
    if job.get("missing_ranks"):
        more = (job.get("missing_count") or 0) - len(job["missing_ranks"])
        lines.append(f"no records from rank(s) {', '.join(map(str, job['missing_ranks']))}"
                     f"{f' and {more} more' if more > 0 else ''} of the job's world size")
    for skipped in job.get("skipped_files") or []:
        lines.append(f"skipped: {skipped}")
    for m in job.get("markers") or []:
        if m.get("state") != "done":
            lines.append(f"still running or killed: the watch of {m.get('marker')} never wrote its end")
    for r in job.get("ranks") or []:
        if r.get("cut_lines"):
            lines.append(f"{rank_label(r)}: {r['file']}: {r['cut_lines']} cut line(s) ignored (the process died "
                         f"mid-write); {r['records']} complete records read")
    return lines


def difference_lines(job: dict[str, Any]) -> list[str]:
    return [f"{d['what']}: " + "; ".join(f"{n} {v}" for n, v in d["by_node"].items())
            for d in job.get("differences") or []]


def render_job_text(job: dict[str, Any]) -> str:
    out = [f"fp8doctor watch --merge {summary_line(job)}", f"verdict: {job['verdict']}: {job.get('reason')}"]
    if job.get("ranks"):
        out += ["", tabulate(job_rows(job), headers=HEADERS, tablefmt="simple", disable_numparse=True)]
    diffs = difference_lines(job)
    out += ["", "differs between nodes:" if diffs else "differs between nodes: nothing"]
    out += [f"  {line}" for line in diffs]
    details = detail_lines(job)
    if details:
        out += [""] + details
    return "\n".join(out) + "\n"


def render_job_md(job: dict[str, Any]) -> str:
    out = [f"Merged records: `{summary_line(job)}`", "", f"**Job verdict: `{job['verdict']}`**: {job.get('reason')}"]
    if job.get("ranks"):
        out += ["", tabulate(job_rows(job), headers=HEADERS, tablefmt="github", disable_numparse=True)]
    diffs = difference_lines(job)
    out += ["", "Differs between nodes:" + ("" if diffs else " nothing")]
    if diffs:
        out += [""] + [f"- {line}" for line in diffs]
    details = detail_lines(job)
    if details:
        out += [""] + [f"- {line}" for line in details]
    return "\n".join(out) + "\n"


def render_job(job: dict[str, Any], fmt: str = "text") -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (text, md, json)")
    safe = redact(job)
    if fmt == "json":
        return json.dumps(safe, indent=2, default=str) + "\n"
    safe = escape_obj(safe)  # a host name or error from a record may not forge a line or drive the terminal
    return redact(render_job_md(safe) if fmt == "md" else render_job_text(safe))
