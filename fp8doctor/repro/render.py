"""Render a repro report as text, Markdown or JSON. The report's data is redacted once (fp8doctor.redact) and
every format is built from that redacted copy."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from fp8doctor.redact import redact
from fp8doctor.render.controls import escape_obj
from fp8doctor.repro.run import ReproReport
from fp8doctor.repro.verdicts import emulated_note, fix_blocks, fix_lines, verdict_paragraph

FORMATS = ("text", "md", "json")


def _loss_text(result: dict[str, Any]) -> str:
    losses = result.get("losses") or []
    if not losses:
        return "-"

    def f(v: Any) -> str:
        return v if isinstance(v, str) else f"{v:.3f}"

    return f"{f(losses[0])} -> {f(losses[-1])}"


def _mp_text(result: dict[str, Any]) -> str:
    acc = result.get("accelerator")
    if acc:
        return str(acc.get("mixed_precision"))
    patch = result.get("patch") or {}
    if patch.get("mixed_precision_arg"):
        return f"{patch['mixed_precision_arg']} (argument)"
    if (result.get("spec") or {}).get("entry") == "native" and result.get("outcome") == "finished":
        return "n/a (no Accelerator)"
    return "-"


def _layers_text(result: dict[str, Any]) -> str:
    eligible = len(result.get("eligible_layers") or [])
    if result.get("outcome") != "finished":
        return f"-/{eligible}" if eligible else "-"
    return f"{len(result.get('fp8_layers') or [])}/{eligible}"


def table_rows(data: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in data["rows"]:
        res = r["result"] or {}
        verdict = r["verdict"] if r["as_expected"] else f"{r['verdict']} (UNEXPECTED)"
        wall = res.get("wall_s")
        out.append([r["label"], " or ".join(r["expected"]), verdict, _mp_text(res), _layers_text(res),
                    _loss_text(res), f"{wall:.1f}s" if isinstance(wall, (int, float)) else "-"])
    return out


HEADERS = ["path", "expected", "verdict", "mixed_precision", "fp8 layers", "loss first -> last", "time"]


def to_data(report: ReproReport) -> dict[str, Any]:
    """The report as plain data (not yet redacted: every output below redacts it once)."""
    return {
        "backend": report.plan.backend,
        "recipe": report.plan.recipe,
        "exit_code": report.exit_code(),
        "environment": report.environment,
        "verdict": verdict_paragraph(report),
        "fix": fix_lines(report),
        "fix_blocks": fix_blocks(report),
        "fix_note": emulated_note(report),
        "notes": report.plan.notes,
        "caller_env": {"removed_from_caller": report.caller_env},
        "configs": {"llamafactory": report.plan.configs.llamafactory_path,
                    "accelerate": report.plan.configs.accelerate_path},
        "wall_s": round(report.wall_s, 2),
        "rows": [{"id": r.key, "label": r.label, "kind": r.kind, "expected": list(r.expected),
                  "verdict": r.verdict, "as_expected": r.as_expected, "reason": r.reason, "result": r.result}
                 for r in report.rows],
    }


def to_json_obj(report: ReproReport) -> dict[str, Any]:
    return redact(to_data(report))


def title(report: ReproReport) -> str:
    return f"fp8doctor repro ({report.plan.backend}:{report.plan.recipe}, tiny Llama, {report.wall_s:.0f}s)"


def render(report: ReproReport, fmt: str = "text", with_title: bool = True) -> str:
    """The report in `fmt`; with_title=False leaves out the title line (a caller that gives its own heading)."""
    from tabulate import tabulate

    data = to_json_obj(report)
    if fmt == "json":
        return json.dumps(data, indent=2, default=str) + "\n"
    data = escape_obj(data)  # text and Markdown: no value may forge a line or drive the terminal
    md = fmt == "md"
    table = tabulate(table_rows(data), headers=HEADERS, tablefmt="github" if md else "simple")
    out: list[str] = []
    if with_title:
        out.append(f"## {title(report)}" if md else title(report))
    out += ["", table, ""]
    reasons = [f"- {r['id']}: {r['reason']}" for r in data["rows"]]
    paragraph = "Verdict: " + data["verdict"]
    out += [paragraph if md else textwrap.fill(paragraph, 118, break_on_hyphens=False), "", "Per run:", *reasons, ""]
    env_vars = data["caller_env"]["removed_from_caller"]
    if env_vars:
        env = ", ".join(f"{k}={v}" for k, v in env_vars.items())
        out += [f"Your shell's FP8-relevant variables were recorded and NOT passed to the runs: {env}", ""]
    blocks = data["fix_blocks"]
    if blocks:  # each alternative on its own, pasteable whole
        out.append("The fixes that worked here (any one is enough):" if len(blocks) > 1 else
                   "The fix that worked here:")
        for n, block in enumerate(blocks, 1):
            out.append(f"{n}. {block['title']}:")
            out += [f"```{block['lang']}", *block["lines"], "```"] if md else [f"    {ln}" for ln in block["lines"]]
        if data.get("fix_note"):
            out.append(data["fix_note"])
        out.append("")
    out.append(f"exit {data['exit_code']}: " + ("diagnosis complete" if data["exit_code"] == 0 else
                                                "the environment cannot import the training stack (not an FP8 "
                                                "result)" if data.get("environment") else
                                                "no fixed path reached fp8-active"))
    return "\n".join(out) + "\n"
