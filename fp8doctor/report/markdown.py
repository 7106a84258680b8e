"""The report as Markdown for a GitHub issue: one first screen (verdict, what ran, what reproduced, what is
silently off, the fix that worked here, what could not be checked and why, each reason once), then the details
in collapsed <details> blocks. No link to a local file: the loss plot is attached by hand, as the text says."""

from __future__ import annotations

import json
from typing import Any

from fp8doctor.render.controls import as_written, escape_controls
from fp8doctor.report import curves
from fp8doctor.report.notes import Notes
from fp8doctor.verdicts import ERROR, FAIL, OK, RAISED, SKIP, WARN

_ICON = {OK: "✅ ok", WARN: "⚠️ warn", FAIL: "❌ fail", ERROR: "💥 error", SKIP: "➖ skip"}
LIST_MAX = 6  # lines per first-screen list; the rest are counted and left to the details


def _e(text: Any) -> str:
    return escape_controls(str(text))


def _details(summary: str, body: str) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", body.strip() or "(nothing)", "", "</details>", ""]


def _bullets(lines: list[str], limit: int = LIST_MAX, shown: set[str] | None = None) -> list[str]:
    if shown is not None:
        shown.update(lines[:limit])
    out = [f"- {_e(line)}" for line in lines[:limit]]
    if len(lines) > limit:
        out.append(f"- … and {len(lines) - limit} more (details below)")
    return out


def _kv_table(d: dict[str, Any], none: str = "") -> str:
    from tabulate import tabulate

    rows = [[_e(k), none if v is None else _e(as_written(v))] for k, v in d.items()]
    return tabulate(rows, headers=["name", "value"], tablefmt="github", disable_numparse=True) if rows else "(none)"


def machine_line(data: dict[str, Any]) -> str:
    v = data["versions"]
    libs = ", ".join(f"{k} {v[k] or 'not installed'}" for k in ("torch", "accelerate", "transformers", "torchao",
                                                                 "transformer-engine"))
    gpu = data.get("gpu") or "no CUDA GPU visible: FP8 runs are torchao CPU emulation (emulate=True)"
    return (f"**Machine**: {gpu}. {libs}; Python {v.get('python')}. fp8doctor {v.get('fp8doctor')}, "
            f"{data['created_at']}, {data['wall_s']:.0f} s.")


def first_screen(data: dict[str, Any], parts: list[Any], notes: Notes, png_name: str | None) -> list[str]:
    from tabulate import tabulate

    out = ["# fp8doctor report", "", f"**Verdict: {_e(data['verdict'])}**", "", machine_line(data), ""]
    rows = [[p.title, _ICON.get(p.status, p.status), p.summary.ran or "-"] for p in parts]
    out += [tabulate(rows, headers=["part", "status", "what ran"], tablefmt="github", disable_numparse=True), ""]
    sums = [p.summary for p in parts]
    exposure = data.get("exposure") or {}
    found, off = [x for s in sums for x in s.found], [x for s in sums for x in s.off]
    sections = [
        ("Problems found in your setup (a reproduced bug, a failed check)", found),
        ("Silently not FP8 in your setup (trained without error, FP8 off)", off),
        ("Warnings", [x for s in sums for x in s.warnings]),
    ]
    if not found and not off:  # one line says both
        sections[:2] = [("Problems found in your setup", ["none: no reproduced bug in your stack, no failed check, "
                                                          "no run silently without FP8"])]
    for title, lines in sections:
        out += [f"### {title}", ""]
        if lines and lines is found and exposure.get("exposed"):
            out += [_e(exposure["sentence"]), ""]
        out += [*(_bullets(lines, shown=notes.shown) if lines else ["- none"]), ""]
    demo = [line for s in sums for _, line in s.demo]
    if demo:
        out += ["### The reference bug with these library versions (shown, not counted)", "",
                _e(exposure.get("sentence") or ""), "", *_bullets(demo, shown=notes.shown), ""]
    out += _fix_lines(parts, notes)
    for p in parts:
        for what, why in p.summary.unchecked:
            notes.cite(why, f"{p.name}: {what}")
    if notes.order:
        out += ["### Not checked on this machine, and why", "", *notes.lines(), ""]
    if png_name:
        out += ["### Loss curves", "",
                f"fp8doctor wrote the plot as `{png_name}`, next to this file: drag that PNG into the GitHub "
                "comment box to attach it (the box uploads it and inserts its link).", ""]
    return out


def _fix_lines(parts: list[Any], notes: Notes) -> list[str]:
    """The fixed paths that reached fp8-active here, each alternative its own numbered, pasteable block."""
    out = ["### Fix that worked here", ""]
    repro = next((p for p in parts if p.name == "repro" and isinstance(p.data, dict)), None)
    fixed = repro.summary.worked if repro else []
    if not fixed:
        return out + ["- none proven on this machine" + (": no fixed path could run here (reasons below)"
                                                         if repro else ": the repro did not run"), ""]
    blocks = (repro.data or {}).get("fix_blocks") or []
    either = " Any one of these alternatives is enough; each block is complete on its own." if len(blocks) > 1 else ""
    out += [f"Reached fp8-active here: {_e('; '.join(fixed))}.{either}", ""]
    for n, block in enumerate(blocks, 1):
        out += [f"{n}. {_e(block['title'])}:", f"   ```{block['lang']}",  # a fence may follow a list line
                *[f"   {_e(x)}" for x in block["lines"]], "   ```", ""]
    if (repro.data or {}).get("fix_note"):
        out += [_e(repro.data["fix_note"]), ""]
    return out


def _env_details(part: Any, notes: Notes) -> str:
    from fp8doctor.render.findings import fact_rows

    findings, facts = part.result
    rows = [(k, v if len(v) <= 110 else v[:107] + "…") for k, v in fact_rows(facts) if k != "Collected in"]
    from tabulate import tabulate

    table = tabulate([[_e(k), _e(v)] for k, v in rows], headers=["fact", "value"], tablefmt="github",
                     disable_numparse=True)
    lines = [table, ""]
    first_said: dict[str, str] = {}  # a detail's line -> the finding that said it first in this block

    def once(detail: str, fid: str) -> list[str]:
        out = []
        for line in detail.splitlines():
            key = line.strip().rstrip(".")
            if key and key in first_said:
                line = f"(the same reason as `{first_said[key]}`)"
            elif key:
                first_said[key] = fid
            out.append(_e(line))
        return out

    for f in findings:
        level = f.level.value
        if level == "skip":
            said = [notes.cite(f.detail or "")] if notes.known(f.detail or "") else once(f.detail or "", f.id)
            lines.append(f"- **{level}** `{f.id}`: {_e(f.title)}: {said[0] if said else ''}")
            lines += [f"  {x}" for x in said[1:]]
            continue
        lines.append(f"- **{level}** `{f.id}`: {_e(f.title)}")
        if f.detail and level != "ok":
            lines += [f"  {x}" for x in once(f.detail, f.id)]
        fix = f.fix if isinstance(f.fix, str) or f.fix is None else "\n".join(map(str, f.fix))
        if fix and level != "ok":
            lines += ["  ```", *[f"  {_e(x)}" for x in fix.splitlines()], "  ```"]
    return "\n".join(lines)


def _repro_details(part: Any, notes: Notes) -> str:
    from tabulate import tabulate

    from fp8doctor.repro.render import HEADERS, table_rows

    data = part.data
    rows = table_rows(data)
    for row, r in zip(rows, data["rows"], strict=True):
        res = r.get("result") or {}
        why = res.get("skip_reason") or r.get("reason") or ""
        if res.get("outcome") == "skipped" and notes.known(why):
            row[2] = f"{row[2]} {notes.cite(why)}"
    headers = [h if h != "loss first -> last" else "loss, first -> last step" for h in HEADERS]
    headers = [h if h != "time" else "wall time" for h in headers]
    out = [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    on_first_screen = 0
    for r in data["rows"]:
        if any(line.startswith(f"{r['label']}: {r['verdict']}") for line in notes.shown):
            on_first_screen += 1  # its reason is a line of the first screen
        elif (r.get("result") or {}).get("outcome") != "skipped" and r.get("reason"):
            out.append(f"- {_e(r['label'])}: {_e(r['reason'])}")
    if on_first_screen:
        out.append(f"- the reason of each reproduced or silently-not-FP8 row ({on_first_screen}) is on the first "
                   "screen")
    for note in data.get("notes") or []:
        out.append(f"\nNote: {_e(notes.cite_inside(note))}")
    return "\n".join(out)


MATRIX_HEADERS = ["cell", "entry", "status", "max rel. loss diff vs bf16", "max rel. grad-norm diff vs bf16",
                  "min FP8 layer SQNR (dB)", "FP8 layers (FP8/eligible)", "FP8 forwards (count)",
                  "max rel. diff vs native", "step time FP8/bf16", "run time (s)"]


def _matrix_details(part: Any, notes: Notes) -> str:
    from tabulate import tabulate

    from fp8doctor.matrix.render import table_rows

    rows, _ = table_rows(part.result)
    ran = []
    for row, cell in zip(rows, part.result.rows, strict=True):
        if cell.shown == SKIP:
            continue
        if cell.shown == RAISED:  # its reason is a numbered note of the first screen
            row[2] = f"raised {notes.cite(cell.verdicts[0].detail)}"
        ran.append([_e(c) for c in row])
    skipped = len(rows) - len(ran)
    out = [tabulate(ran, headers=MATRIX_HEADERS, tablefmt="github", disable_numparse=True) if ran
           else "(no cell could run here)", ""]
    if skipped:
        out.append(f"{skipped} cells skipped, for the reasons numbered on the first screen.")
    if any(r.shown == RAISED for r in part.result.rows):
        out.append("A raised cell hit a known CPU limit (its note says which): counted as raised, it fails nothing.")
    return "\n".join(out)


def without_local_roots(text: str) -> str:
    """Paths inside fp8doctor's own package said from the package ('fp8doctor/runs/...'), not from this disk."""
    import os

    import fp8doctor

    root = os.path.dirname(os.path.dirname(os.path.abspath(fp8doctor.__file__))) + os.sep
    return text.replace(root, "")


def render_markdown(data: dict[str, Any], parts: list[Any], png_name: str | None,
                    pairs: list[dict[str, Any]], plot_missing: bool = False) -> str:
    from tabulate import tabulate

    notes = Notes()
    out = first_screen(data, parts, notes, png_name)
    if plot_missing:
        out += ["### Loss curves", "", "No plot: matplotlib is not installed (`pip install 'fp8doctor[plot]'` adds "
                "it); the losses are in \"Loss values as text\" below.", ""]
    out += ["---", ""]
    renderers = {"env": _env_details, "repro": _repro_details, "matrix": _matrix_details}
    for p in parts:
        title = f"{p.title}: {_ICON.get(p.status, p.status)} ({p.seconds:.0f} s)"
        if p.status == ERROR or p.result is None:
            body = "\n".join(f"- {_e(x)}" for x in p.summary.found) or "(nothing)"
            if p.name == "watch" and isinstance(p.data, dict):
                from fp8doctor.watch.render import render as render_watch

                body = render_watch(p.data, "md")
        else:
            body = renderers[p.name](p, notes) if p.name in renderers else ""
            if p.name == "watch":
                from fp8doctor.watch.render import render as render_watch

                body = render_watch(p.data, "md")
            if p.name == "inspect":
                from fp8doctor.inspect.render import render as render_inspect

                body = render_inspect(p.data, "md")
        out += _details(title, body)
    if pairs:
        rows = curves.sparkline_table(pairs)
        body = ("One character per step, each row on its own scale; the last column is the FP8 − bf16 difference "
                "of the final loss.\n\n" + tabulate(rows, headers=["cell", "entry", "FP8 loss", "bf16 loss",
                                                                  "final FP8 − bf16"], tablefmt="github",
                                                     disable_numparse=True))
        out += _details("Loss values as text", body)
    out += _details("Versions", _kv_table(data["versions"], none="not installed"))
    out += _details("Environment variables (FP8-relevant, secrets redacted)", _kv_table(data["environment"]))
    meta = {k: data[k] for k in ("schema_version", "created_at", "exit_code", "options", "command") if k in data}
    out += _details("Report metadata", "```json\n" + json.dumps(meta, indent=2, default=str) + "\n```")
    return without_local_roots("\n".join(out))
