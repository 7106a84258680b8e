"""The matrix as a table (text / Markdown via tabulate) or JSON; skip reasons grouped under the table."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from fp8doctor import SCHEMA_VERSION
from fp8doctor.matrix.divergence import numerics_of
from fp8doctor.matrix.run import MatrixResult, Row
from fp8doctor.redact import redact
from fp8doctor.render.controls import escape_controls
from fp8doctor.render.numerics import layer_table
from fp8doctor.verdicts import CELL_STATUSES, FAIL, PASS, RAISED, SKIP, WARN

HEADERS = ["cell", "entry", "status", "loss vs bf16", "grad norm vs bf16", "min SQNR dB", "FP8 layers", "FP8 fwd",
           "vs native", "FP8/bf16 time", "run s"]
_MARK = {PASS: "pass", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}


def _verdict(row: Row, name: str) -> Any:
    return next((v for v in row.verdicts if v.check == name), None)


def _cell_text(row: Row, name: str) -> str:
    v = _verdict(row, name)
    if v is None:
        return ""
    if v.level.value == "skip":
        return "-"
    mark = "" if v.level.value == "ok" else f"{v.level.value.upper()} "
    if name == "loss_vs_bf16":
        return f"{mark}{v.value:.1e}" if v.value is not None else mark + v.detail
    if name == "fp8_layers":
        return mark + v.detail.split(":")[0].replace(" FP8 layers / ", "/").replace(" eligible", "")
    if name == "fp8_active":
        return f"{mark}{'yes' if v.level.value == 'ok' else 'no'} ({int(v.value or 0)})"
    if name == "native_agreement":
        return mark + ("identical" if v.value == 0.0 else f"{v.value:.1e}")
    if name == "step_time_ratio":
        return f"{mark}{v.value:.2f}x"
    if name in ("divergence", "numerics"):
        fmt = ".1e" if name == "divergence" else ".1f"
        return mark + (format(v.value, fmt) if v.value is not None else "-")
    return mark + v.detail


def table_rows(result: MatrixResult) -> tuple[list[list[str]], dict[str, int]]:
    """Table rows, and the footnote number of each distinct skip reason."""
    notes: OrderedDict[str, int] = OrderedDict()
    rows = []
    for row in result.rows:
        spec = row.cell.spec
        status = _MARK[row.status] + (" (resumed)" if row.reused else "")
        if row.status == SKIP:
            reason = row.verdicts[0].detail
            status = f"{row.shown} [{notes.setdefault(reason, len(notes) + 1)}]"
        elif row.status == FAIL:
            fails = [v.check for v in row.verdicts if v.level.value in ("fail", "error")]
            status += ": " + ", ".join(fails)
        total = (row.result.get("timings_s") or {}).get("total")
        rows.append([
            f"{spec.backend}:{spec.recipe}" if spec.backend != "none" else "bf16 baseline",
            spec.entry_label(),
            status,
            _cell_text(row, "loss_vs_bf16"),
            _cell_text(row, "divergence"),
            _cell_text(row, "numerics"),
            _cell_text(row, "fp8_layers"),
            _cell_text(row, "fp8_active"),
            _cell_text(row, "native_agreement"),
            _cell_text(row, "step_time_ratio"),
            f"{total:.1f}" if isinstance(total, (int, float)) else "",
        ])
    return rows, dict(notes)


def summary(result: MatrixResult) -> str:
    counts = {s: sum(1 for r in result.rows if r.shown == s) for s in (*CELL_STATUSES, RAISED)}
    verdict = "FAIL" if counts[FAIL] else ("no cell could run here" if counts[SKIP] == len(result.rows)
                                           else "all runnable cells pass")
    raised = f"{counts[RAISED]} raised at a known CPU limit (not a failure), " if counts[RAISED] else ""
    return (f"matrix: {verdict} - {counts[PASS]} pass, {counts[WARN]} warn, {counts[FAIL]} fail, {raised}"
            f"{counts[SKIP]} skipped; {result.wall_s:.1f} s wall with {result.workers} worker(s)")


def failure_lines(result: MatrixResult, levels: tuple[str, ...] = ("fail", "error")) -> list[str]:
    out = []
    for row in result.rows:
        for v in row.verdicts:
            if v.level.value in levels:
                out.append(f"{row.cell.spec.label()}: {v.check}: {v.detail}")
    return out


def numerics_section(result: MatrixResult, fmt: str) -> list[str]:
    """Per FP8 cell its sampled numerics in one line; the per-layer table for a cell with layers to keep in bf16
    (every cell's rows are in the JSON output)."""
    out: list[str] = []
    for row in result.rows:
        v = _verdict(row, "numerics")
        n = numerics_of(row.result)
        if v is None or n is None:
            continue
        out.append(escape_controls(f"  {row.cell.spec.label()}: {v.level.value}: {v.detail}"))
        if n["candidates"]:
            out += ["", layer_table(n["layers"], fmt), ""]
    if not out:
        return []
    return ["", "FP8 numerics (worst sample per layer; SQNR of the FP8 matmul output vs the high-precision one):",
            *out]


def render_text(result: MatrixResult, fmt: str = "text") -> str:
    from tabulate import tabulate

    rows, notes = table_rows(result)
    rows = [[escape_controls(cell) for cell in row] for row in rows]  # error texts and paths: one line each
    tablefmt = "github" if fmt == "md" else "simple"
    parts = [tabulate(rows, headers=HEADERS, tablefmt=tablefmt, disable_numparse=True)]
    if notes:
        parts.append("")
        parts += [f"[{n}] {escape_controls(reason)}" for reason, n in notes.items()]
    parts += numerics_section(result, fmt)
    for title, levels in (("Failed checks:", ("fail", "error")), ("Warnings:", ("warn",))):
        lines = failure_lines(result, levels)
        if lines:
            parts += ["", title] + [f"  {escape_controls(line)}" for line in lines]
    if any(r.result.get("emulated") for r in result.rows):
        parts += ["", "torchao ran with Float8LinearConfig(emulate=True): real FP8 casts and scaling, plain "
                  "matmul (no FP8 GEMM on CPU); step-time ratios are informational there."]
    if result.problems:
        parts += [""] + [f"resume: {escape_controls(p)}" for p in result.problems]
    if result.out:
        parts += ["", f"results: {escape_controls(result.out)}"]
    parts += ["", summary(result)]
    text = "\n".join(parts)
    return redact(text)


def to_json_obj(result: MatrixResult) -> dict[str, Any]:
    return redact({
        "schema_version": SCHEMA_VERSION,
        "kind": "fp8doctor.matrix",
        "summary": summary(result),
        "exit_code": result.exit_code(),
        "wall_s": round(result.wall_s, 3),
        "workers": result.workers,
        "out": result.out,
        "problems": result.problems,
        "cells": [
            {
                "key": r.cell.key,
                "role": r.cell.role,
                "label": r.cell.spec.label(),
                "status": r.status,
                "shown": r.shown,
                "reused": r.reused,
                "verdicts": [v.to_dict() for v in r.verdicts],
                "result": r.result,
            }
            for r in result.rows
        ],
    })


def render(result: MatrixResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_json_obj(result), indent=2, sort_keys=False, default=str)
    return render_text(result, fmt)
