"""Render facts + findings as the doctor's text view, a Markdown block for an issue, or JSON. All redacted."""

from __future__ import annotations

import json
from typing import Any

from fp8doctor import SCHEMA_VERSION, __version__
from fp8doctor.findings import Finding, Level, exit_code, summary_line
from fp8doctor.redact import public_facts, redact
from fp8doctor.render.controls import as_written, escape_controls, escape_embedded, escape_obj, unsafe_strings

FORMATS = ("text", "md", "json")
NOT_INSTALLED = "not installed"
MARK = {Level.OK: "[✓]", Level.WARN: "[!]", Level.FAIL: "[✗]", Level.ERROR: "[E]", Level.SKIP: "[-]"}
ORDER = {Level.ERROR: 0, Level.FAIL: 1, Level.WARN: 2, Level.OK: 3, Level.SKIP: 4}


def _v(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


def fact_rows(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """The facts a reader needs, one (label, value) per row, in collect_env style."""
    p, g = facts.get("platform", {}), facts.get("gpu", {})
    tb, pk = facts.get("torch_build", {}), facts.get("packages", {})
    gens, te = facts.get("generations", {}), facts.get("te_import", {})
    rows = [("fp8doctor", f"{__version__} (schema {SCHEMA_VERSION})"),
            ("Platform", f"{_v(p.get('system'))}, Python {_v(p.get('python'))}, {_v(p.get('cpu_count'))} CPUs")]
    by = p.get("diagnosed_by")
    if by:
        rows.append(("Diagnosed env", f"{_v(p.get('executable'))} (--python; fp8doctor runs in {by['executable']}, "
                                      f"nothing installed there)"))
    if g.get("visible"):
        for d in g["visible"]:
            cc = ".".join(map(str, d["cc"])) if d.get("cc") else "?"
            rows.append((f"GPU {d['index']}", f"{d['name']}, compute capability {cc}, {_v(d.get('memory_mib'))} MiB, "
                                              f"driver {_v(d.get('driver'))} (via {g.get('source')})"))
    else:
        rows.append(("GPU", _v(g.get("status"))))
    for fam, s in g.get("fp8_support", {}).items():
        rows.append((f"FP8 {fam}", {True: "supported", False: "not supported"}.get(s["supported"], "unknown")))
    if pk.get("torch"):
        rows.append(("torch", f"{pk['torch']} (CUDA {_v(tb.get('cuda'))}, cuDNN {_v(tb.get('cudnn'))})"))
    else:
        rows.append(("torch", NOT_INSTALLED))
    te_v = pk.get("transformer-engine") or pk.get("transformer-engine-torch")
    if te_v:
        parts = [f"{k.removeprefix('transformer-engine-')} {pk[k]}" for k in
                 ("transformer-engine-cu12", "transformer-engine-cu13", "transformer-engine-torch") if pk.get(k)]
        imp = "imports" if te.get("ok") else f"does NOT import: {te.get('error')}"
        rows.append(("Transformer Engine", f"{te_v} ({', '.join(parts) or 'no core package found'}); {imp}"))
    else:
        rows.append(("Transformer Engine", "not installed"))
    for name in ("accelerate", "transformers"):
        gen = gens.get(name, {})
        gen_text = f" [{gen['generation']}: {gen['summary']}]" if gen.get("summary") else ""
        rows.append((name, (pk.get(name) or NOT_INSTALLED) + gen_text))
    for name in ("torchao", "msamp", "deepspeed", "flash-attn", "llamafactory", "trl", "axolotl", "peft", "numpy"):
        rows.append((name, pk.get(name) or NOT_INSTALLED))
    runs = facts.get("runs") or {}
    if runs.get("missing"):
        rows.append(("Training runs", f"repro/matrix/report cannot start: {', '.join(runs['missing'])} not installed; "
                                      f"{runs['install']}"))
    env = facts.get("environ", {}).get("relevant", {})
    rows.append(("Environment", ", ".join(f"{k}={as_written(v)}" for k, v in env.items())
                 or "no FP8-related variable set"))
    acc = facts.get("accelerate_config", {})
    if acc.get("exists"):
        fp8 = acc.get("fp8_config") or {}
        rows.append(("Accelerate config", f"{acc['path']} ({acc['chosen_by']}): mixed_precision "
                                          f"{as_written(_v(acc.get('mixed_precision')))}, fp8_config {fp8 or '-'}"))
    else:
        rows.append(("Accelerate config", f"none at {acc.get('path')}"))
    for cfg in facts.get("configs", []):
        rows.append(("Config", f"{cfg['path']} ({cfg['label']})"))
    rows.append(("FP8 intended", "; ".join(facts.get("intent", [])) or "no sign of FP8 intent"))
    prec = facts.get("precision", {})
    if prec:
        rows.append(("Effective precision", as_written(prec["effective"])))
        rows.append(("Observed releases", "; ".join(prec.get("observed") or [])
                     or "the lab observed every installed release the prediction uses"))
    rows.append(("Collected in", f"{facts.get('collect_seconds', '?')} s"))
    if facts.get("what_if"):
        asked = ", ".join(f"{k} {v['asked']} in place of {v['installed'] or 'none'}"
                          for k, v in facts["what_if"].items())
        rows.insert(0, ("What if", f"{asked} (nothing installed: the engine's answer)"))
    return rows


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: ORDER[f.level])


def _indent(text: str, prefix: str = "    ") -> list[str]:
    return [prefix + line for line in text.splitlines()]


def render_text(findings: list[Finding], facts: dict[str, Any]) -> str:
    rows = fact_rows(facts)
    width = max(len(k) for k, _ in rows)
    lines = ["fp8doctor env", ""] + [f"{k.ljust(width)} : {v}" for k, v in rows] + ["", "Findings:"]
    for f in _sorted(findings):
        lines.append(f"{MARK[f.level]} {f.title}")
        if f.level is not Level.OK and f.detail:
            lines += _indent(f.detail)
        if f.fix and f.level in (Level.WARN, Level.FAIL, Level.ERROR):
            fix = f.fix.splitlines()
            lines.append("    fix: " + fix[0])
            lines += _indent("\n".join(fix[1:]), "         ")
    lines += ["", summary_line(findings)]
    return "\n".join(lines) + "\n"


def render_md(findings: list[Finding], facts: dict[str, Any]) -> str:
    from tabulate import tabulate

    table = tabulate([(k, v.replace("|", "\\|")) for k, v in fact_rows(facts)], headers=("Fact", "Value"),
                     tablefmt="github")
    out = ["### `fp8doctor env`", "", table, "", "#### Findings", ""]
    for f in _sorted(findings):
        out.append(f"- {MARK[f.level]} **{f.level.value}** `{f.id}`: {f.title}")
        if f.level is not Level.OK and f.detail:
            out += ["  " + line for line in f.detail.splitlines()]
        if f.fix and f.level in (Level.WARN, Level.FAIL, Level.ERROR):
            out += ["", "  ```", *("  " + line for line in f.fix.splitlines()), "  ```"]
    out += ["", f"**{summary_line(findings)}**"]
    return "\n".join(out) + "\n"


def render_json(findings: list[Finding], facts: dict[str, Any]) -> str:
    doc = {
        "schema_version": SCHEMA_VERSION,
        "tool": "fp8doctor env",
        "fp8doctor_version": __version__,
        "exit_code": exit_code(findings),
        "summary": summary_line(findings),
        "findings": [f.to_dict() for f in _sorted(findings)],
        "facts": facts,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def render(findings: list[Finding], facts: dict[str, Any], fmt: str = "text") -> str:
    """Render in `fmt` (text, md, json); the facts and the findings are redacted once, before use."""
    safe_facts = public_facts(facts)
    safe = [Finding(f.id, f.level, redact(f.title), redact(f.detail), redact(f.fix)) for f in findings]
    if fmt == "json":
        return render_json(safe, safe_facts)
    # Text and Markdown: values and paths must not forge lines (newline) or drive the terminal (ESC).
    # A finding's detail and fix are multi-line: the values of the facts embedded in them are escaped whole.
    safe_facts = escape_obj(safe_facts)
    unsafe = unsafe_strings(facts)
    safe = [Finding(f.id, f.level, escape_controls(redact(f.title)), redact(escape_embedded(f.detail, unsafe)),
                    redact(escape_embedded(f.fix, unsafe))) for f in findings]
    if fmt == "md":
        return render_md(safe, safe_facts)
    if fmt == "text":
        return render_text(safe, safe_facts)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
