"""The report as Markdown: verdict first, then each part, loss curves, and collapsed details."""

from __future__ import annotations

import json
import os
from typing import Any

from fp8doctor.render.controls import escape_controls
from fp8doctor.report import curves
from fp8doctor.verdicts import ERROR, FAIL, OK, SKIP

_ICON = {OK: "✅", FAIL: "❌", ERROR: "⚠️", SKIP: "➖"}


def _details(summary: str, body: str) -> str:
    return f"<details>\n<summary>{summary}</summary>\n\n{body}\n\n</details>"


def _kv_table(d: dict[str, Any]) -> str:
    from tabulate import tabulate

    rows = [[escape_controls(str(k)), "" if v is None else escape_controls(str(v))] for k, v in d.items()]
    return tabulate(rows, headers=["name", "value"], tablefmt="github", disable_numparse=True) if rows else "(none)"


def render_markdown(data: dict[str, Any], parts: list[Any], png: str | None, pairs: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    out = ["# fp8doctor report", ""]
    out.append(f"**Verdict: {data['verdict']}**")
    out.append("")
    for p in parts:
        out.append(f"- {_ICON.get(p.status, '')} **{p.title}** ({p.seconds:.0f} s): {escape_controls(p.headline)}")
    out += ["", f"Created {data['created_at']} by fp8doctor {data['versions'].get('fp8doctor')} on "
            f"{data['versions'].get('platform')}; total {data['wall_s']} s."]
    if data.get("command"):
        out.append(f"Command: `{escape_controls(data['command'])}`")
    for p in parts:
        out += ["", f"## {p.title}", "", p.markdown.strip() or "(nothing to show)"]
        if p.name == "matrix" and pairs:
            out += ["", "### Loss curves (FP8 vs bf16 baseline, same seed)", ""]
            if png:
                out.append(f"![loss curves]({os.path.basename(png)})")
            else:
                rows = curves.sparkline_table(pairs)
                out.append("matplotlib is not installed, so the curves are text sparklines (one character per "
                           "step, shared scale per row):")
                out += ["", tabulate(rows, headers=["cell", "entry", "FP8 loss", "bf16 loss"], tablefmt="github",
                                     disable_numparse=True)]
    out += ["", "## Details", ""]
    out.append(_details("Versions", _kv_table(data["versions"])))
    out.append("")
    out.append(_details("Environment (FP8-relevant variables, secrets redacted)", _kv_table(data["environment"])))
    out.append("")
    summary = {k: data[k] for k in ("schema_version", "created_at", "exit_code", "options")}
    out.append(_details("Report metadata", "```json\n" + json.dumps(summary, indent=2, default=str) + "\n```"))
    out.append("")
    return "\n".join(out)
