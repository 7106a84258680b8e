"""`fp8doctor inspect` as text, Markdown or JSON, all from one redacted copy of the analysis."""

from __future__ import annotations

import json
import re
from typing import Any

from fp8doctor import SCHEMA_VERSION
from fp8doctor.knowledge.shapes import FP8, TARGETS
from fp8doctor.redact import redact
from fp8doctor.render.controls import escape_obj

_LAYER_INDEX = re.compile(r"(?<=[A-Za-z_]\.)\d+(?=\.[A-Za-z_])")
SHORT = {"accelerate-ao": "Acc+AO", "torchao": "torchao", "accelerate-te": "Acc+TE", "te-mxfp8": "TE MXFP8"}
MARK = {"fp8": "fp8", "kept": "bf16", "fails": "FAILS", "mixed": "mixed"}
ESTIMATE_NOTE = ("roofline of the Linear GEMMs and their FP8 casts (torchao's float8 model) plus the attention "
                 "matmuls in bf16; norms, activations, optimizer and communication are not counted, so the step "
                 "speed-up is an upper bound; small GEMMs gain little or lose")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def coverage_rows(data: dict[str, Any]) -> list[list[str]]:
    return [[c["label"], f"{c['fp8_layers']}/{c['linear_layers']}", str(c["kept"]), str(c["fails"]),
             _pct(c["flops_share"])] for c in data["coverage"].values()]


def class_rows(data: dict[str, Any]) -> list[list[str]]:
    est = data.get("estimate")
    rows = []
    for c in data["classes"]:
        shape = ", ".join(f"{i}x{o}" for i, o in c["shapes"])
        marks = [MARK[c["targets"][t]["status"]] for t in TARGETS]
        row = [c["class"], str(c["count"]), shape, _pct(c["flops_share"]), *marks]
        if est:
            speed = est["class_speedup"].get(c["class"], {})
            row.append(" / ".join(f"{v:.2f}x" for v in speed.values()) or "-")
        rows.append(row)
    return rows


def class_headers(data: dict[str, Any]) -> list[str]:
    headers = ["layer class", "n", "in x out", "FLOPs", *(SHORT[t] for t in TARGETS)]
    if est := data.get("estimate"):
        recipes = " / ".join(next(iter(est["class_speedup"].values()), {}).keys()) or "FP8"
        headers.append(f"FP8 vs bf16 if converted, {est['gpu']} ({recipes})")
    return headers


def not_fp8(data: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Per path, one line per layer class (or single layer) that is not FP8, with the reason."""
    out = []
    for t in TARGETS:
        lines = []
        for c in data["classes"]:
            info = c["targets"][t]
            if info["status"] == FP8:
                continue
            members = [m for m in data["layers"] if m["class"] == c["class"] and m["targets"][t]["status"] != FP8]
            by_reason: dict[str, list[dict[str, Any]]] = {}
            for m in members:  # "after model.layers.3.mlp.gate_proj" groups as "after model.layers.N.mlp.gate_proj"
                by_reason.setdefault(_LAYER_INDEX.sub("N", m["targets"][t]["reason"]), []).append(m)
            for reason, ms in by_reason.items():
                if len(ms) == 1:
                    shown, reason = ms[0]["name"], ms[0]["targets"][t]["reason"]
                else:
                    shown = f"{c['class']} ({len(ms)} layers)"
                lines.append(f"{shown} {ms[0]['in_features']}x{ms[0]['out_features']}: {reason}")
        out.append((TARGETS[t]["label"], lines))
    return out


def estimate_rows(est: dict[str, Any]) -> list[list[str]]:
    rows = []
    for t, e in est["targets"].items():
        if not e["supported"]:
            rows.append([TARGETS[t]["label"], "-", "-", "-", "-", e["reason"]])
        else:
            rows.append([TARGETS[t]["label"], e["recipe"], f"{e['bf16_ms']:.1f}", f"{e['fp8_ms']:.1f}",
                         f"{e['speedup']:.2f}x", f"Linear only {e['linear_speedup']:.2f}x"])
    return rows


ESTIMATE_HEADERS = ["path", "recipe", "bf16 ms", "FP8 ms", "step speed-up", "note"]
COVERAGE_HEADERS = ["path", "FP8 layers", "kept bf16", "fail", "Linear FLOPs in FP8"]


def _head(data: dict[str, Any]) -> str:
    m = data["model"]
    return (f"{m['architecture']} ({m['model_type']}), {_params(m['parameters'])} parameters, "
            f"{m['linear_layers']} Linear layers; built on the meta device from {m['path']} "
            "(no weights read, nothing downloaded)")


def render_text(data: dict[str, Any], markdown: bool = False) -> str:
    from tabulate import tabulate

    data = escape_obj(redact(data))
    fmt = "github" if markdown else "simple"
    h = "### " if markdown else ""
    out = [("## " if markdown else "") + "fp8doctor inspect", "", _head(data)]
    out += [f"- {n}" if markdown else f"  note: {n}" for n in data["model"]["notes"]]
    acc = data["accelerate"] or "not installed (newest observed rules)"
    out += ["", f"{h}FP8 coverage per path (Accelerate {acc})", "",
            tabulate(coverage_rows(data), COVERAGE_HEADERS, tablefmt=fmt, disable_numparse=True), ""]
    out += [f"{h}Layer classes", "", tabulate(class_rows(data), class_headers(data), tablefmt=fmt,
                                               disable_numparse=True), ""]
    out += [f"{h}Not in FP8, and why", ""]
    for label, lines in not_fp8(data):
        out.append(f"{'**' + label + '**' if markdown else label}: {'every Linear in FP8' if not lines else ''}")
        out += [f"- {ln}" if markdown else f"  - {ln}" for ln in lines]
    if est := data["estimate"]:
        out += ["", f"{h}Estimated FP8 speed-up on {est['name']}", "",
                f"batch {est['batch']} x sequence {est['seq_len']} = {est['tokens']} tokens per GPU per step; "
                f"{ESTIMATE_NOTE}.", "",
                tabulate(estimate_rows(est), ESTIMATE_HEADERS, tablefmt=fmt, disable_numparse=True), "",
                f"GPU peaks: {est['source']}", f"Efficiency: {est['efficiency_source']}"]
    else:
        out += ["", "No speed estimate: name a GPU with --gpu."]
    return "\n".join(out) + "\n"


def to_json_obj(data: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "command": "inspect", **redact(data)}


def render(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_json_obj(data), indent=2) + "\n"
    return render_text(data, markdown=fmt == "md")
