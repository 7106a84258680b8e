"""Render a watch result as text, Markdown (embedded by `fp8doctor report --watch`) or JSON; always redacted."""

from __future__ import annotations

import json
import shlex
from typing import Any

from tabulate import tabulate

from fp8doctor.redact import redact
from fp8doctor.render.controls import escape_obj
from fp8doctor.render.numerics import candidate_lines, layer_table
from fp8doctor.watch.adapters import lora_words
from fp8doctor.watch.baseline import lines as baseline_lines

FORMATS = ("text", "md", "json")
MAX_LOSSES_SHOWN = 8


def command_line(result: dict[str, Any]) -> str:
    return shlex.join(result.get("command") or [])


def outcome_line(result: dict[str, Any]) -> str:
    took = f"after {result.get('duration_s')} s"
    if result.get("timed_out"):
        return f"timed out after {result.get('timeout_s')} s: its process group was stopped"
    if result.get("interrupted"):
        by = result.get("stopped_by")
        return f"stopped by {by} {took}" if by and by != "SIGINT" else f"interrupted {took}"
    if result.get("signal"):
        return f"killed by {result['signal']} {took}"
    return f"exited {result.get('exit_code')} {took}"


def _rank_name(r: dict[str, Any]) -> str:
    return f"rank {r['rank']}" if r.get("rank") is not None else "main"


def _acc_cell(r: dict[str, Any]) -> str:
    acc = r.get("accelerator") or {}
    if not acc:
        return "-"
    res = acc.get("result") or {}
    arg = acc.get("arg_mixed_precision")
    env = (acc.get("env") or {}).get("ACCELERATE_MIXED_PRECISION")
    asked = f"arg {arg if arg is not None else '-'}, env {env if env is not None else '-'}"
    if acc.get("error"):
        return f"{asked} -> raised {acc['error'].get('type')}"
    return f"{asked} -> {res.get('mixed_precision')} (fp8_enabled {res.get('fp8_enabled')}, {res.get('fp8_backend')})"


def _layers_cell(r: dict[str, Any]) -> str:
    m = r.get("model")
    if not m:
        return "-"
    return f"{m['fp8_layers']}/{m['eligible']}"


def _forwards_cell(r: dict[str, Any]) -> str:
    m = r.get("model")
    if not m:
        return "-"
    return f"{m['fp8_module_forwards']} in {m['forwards_seen']} passes"


def _losses(result: dict[str, Any], pid: Any) -> list[str]:
    for p in result.get("processes") or []:
        if p.get("pid") != pid:
            continue
        trainer = [x["values"].get("loss") for x in p.get("losses") or [] if x.get("source") == "trainer.log"
                   and "loss" in (x.get("values") or {})]
        values = trainer or [x.get("value") for x in p.get("losses") or [] if x.get("source") == "accelerator.backward"]
        source = "Trainer.log" if trainer else "Accelerator.backward"
        if not values:
            return []
        shown = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in values[:MAX_LOSSES_SHOWN]]
        more = f" ... ({len(values)} in all)" if len(values) > MAX_LOSSES_SHOWN else ""
        return [f"{source}: {', '.join(shown)}{more}"]
    return []


def rank_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in result.get("ranks") or []:
        rows.append([_rank_name(r), str(r.get("pid")), r["verdict"], _acc_cell(r), _layers_cell(r),
                     _forwards_cell(r), "; ".join(_losses(result, r.get("pid"))) or "-"])
    return rows


HEADERS = ["process", "pid", "verdict", "Accelerator (asked -> got)", "FP8/eligible", "FP8 forwards", "losses"]


def numerics_lines(result: dict[str, Any], fmt: str) -> list[str]:
    """`--numerics`: per rank a table of the sampled FP8 layers and the candidates to keep in bf16."""
    out: list[str] = []
    for r in result.get("ranks") or []:
        n = (r.get("model") or {}).get("numerics")
        if not n:
            continue
        out += ["", f"{_rank_name(r)} FP8 numerics (each FP8 layer sampled every {n['every']} calls; worst sample):",
                "", layer_table(n["layers"], fmt), ""] + candidate_lines(n)
    return out


def optimizer_words(outside: dict[str, Any] | None) -> str:
    """Whether the optimizer holds the prepared model's trainable parameters, as the observer compared them."""
    if not outside:
        return "not compared (no optimizer was prepared together with the model)"
    if outside.get("skipped"):
        return f"not compared ({outside['skipped']})"
    if not outside.get("count"):
        return "holds every trainable parameter"
    return (f"{outside['count']} trainable parameters outside it ({outside.get('fp8_weights', 0)} FP8 layers' "
            f"weights), e.g. {', '.join((outside.get('names') or [])[:3])}")


def _details(result: dict[str, Any]) -> list[str]:
    lines = []
    ranks = result.get("ranks") or []
    for r in ranks:
        if len(ranks) > 1:
            lines.append(f"{_rank_name(r)}: {r['verdict']}: {r.get('reason')}")
        acc = r.get("accelerator") or {}
        if acc.get("handlers"):
            lines.append(f"{_rank_name(r)} kwargs_handlers: {', '.join(acc['handlers'])}")
        m = r.get("model") or {}
        if m.get("fp8_layers"):
            ev = m.get("eval")
            lines.append(f"{_rank_name(r)} evaluation: " + ("no forward pass in eval mode was seen" if not ev else
                         f"{'in FP8' if ev['fp8'] else 'NOT in FP8'}: {ev['reason']}"
                         + (f"; fix: {ev['fix']}" if ev.get("fix") else "")))
        if m.get("fp8_layers"):
            lines.append(f"{_rank_name(r)} optimizer: {optimizer_words(m.get('outside_optimizer'))}")
        if m.get("missing"):
            lines.append(f"{_rank_name(r)} eligible but not FP8: {', '.join(m['missing'][:6])}"
                         + (f" (+{len(m['missing']) - 6})" if len(m["missing"]) > 6 else ""))
    if result.get("peft"):
        lines.append(lora_words(result["peft"]))
    for h in result.get("helpers") or []:
        argv = " ".join(h.get("argv") or [])
        lines.append(f"other Python process {h.get('pid')} (no Accelerator): {argv[:120]}")
    return lines


def frontend_words(result: dict[str, Any]) -> str | None:
    """The frontend that built the TrainingArguments, with its version ("TRL 1.16.0"), if one did."""
    name = result.get("frontend")
    if not name:
        return None
    version = (result.get("versions") or {}).get(name.lower())
    return f"{name} {version}" if version else name


def render_text(result: dict[str, Any]) -> str:
    out = [
        f"fp8doctor watch: {command_line(result)}",
        f"command: {outcome_line(result)}",
        f"verdict: {result['verdict']}: {result.get('reason')}",
    ]
    if frontend_words(result):
        out.append(f"frontend: {frontend_words(result)}")
    if result.get("ranks"):
        out += ["", tabulate(rank_rows(result), headers=HEADERS, tablefmt="simple")]
    details = _details(result)
    if details:
        out += [""] + details
    out += numerics_lines(result, "text") + baseline_lines(result.get("divergence"), "text")
    if result.get("fix"):
        out += ["", "fix:"] + [f"  {line}" for line in result["fix"]]
    return "\n".join(out) + "\n"


def render_md(result: dict[str, Any]) -> str:
    # No heading: `fp8doctor report --watch` embeds this under its own.
    out = [
        f"Command: `{command_line(result)}` ({outcome_line(result)})",
        "",
        f"**Verdict: `{result['verdict']}`**: {result.get('reason')}",
    ]
    if frontend_words(result):
        out += ["", f"Frontend: {frontend_words(result)}"]
    if result.get("ranks"):
        out += ["", tabulate(rank_rows(result), headers=HEADERS, tablefmt="github")]
    details = _details(result)
    if details:
        out += [""] + [f"- {line.strip()}" for line in details]
    out += numerics_lines(result, "md") + baseline_lines(result.get("divergence"), "md")
    if result.get("fix"):
        out += ["", "Fix for the installed versions:", "", "```", *result["fix"], "```"]
    return "\n".join(out) + "\n"


def render(result: dict[str, Any], fmt: str = "text") -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (text, md, json)")
    if fmt == "json":
        return json.dumps(redact(result), indent=2, default=str) + "\n"
    safe = escape_obj(redact(result))  # no value may forge a line or drive the terminal
    return render_md(safe) if fmt == "md" else render_text(safe)
