"""The report's parts, each measured by its own command's code and returned as data + Markdown.

A part whose code is missing or raises becomes an `error` section with the reason; the report is still written.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.verdicts import ERROR, FAIL, FP8_ACTIVE, OK


@dataclass
class Section:
    name: str
    title: str
    status: str  # one of fp8doctor.verdicts.PART_STATUSES
    headline: str  # one line for the summary at the top
    markdown: str = ""
    data: Any = None
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "status": self.status, "headline": self.headline,
                "seconds": round(self.seconds, 2), "data": self.data, "files": self.files}


def guarded(name: str, title: str, build: Callable[[], Section]) -> Section:
    """Run one part; an exception becomes an error section rather than a lost report."""
    import time

    t0 = time.monotonic()
    try:
        section = build()
    except Exception as exc:  # noqa: BLE001 - one broken part must not lose the others' measurements
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{last.filename}:{last.lineno}"
        section = Section(name, title, ERROR, f"could not run: {type(exc).__name__}: {exc}",
                          f"`{type(exc).__name__}: {exc}` at `{where}`",
                          {"error": {"type": type(exc).__name__, "message": str(exc), "where": where}})
    section.seconds = time.monotonic() - t0
    return section


def env_section(config_files: list[str] | None = None) -> Section:
    from fp8doctor.facts.collect import collect_facts
    from fp8doctor.findings import exit_code, summary_line
    from fp8doctor.render.findings import render
    from fp8doctor.rules import evaluate

    facts = collect_facts(config_files) if config_files else collect_facts()
    findings = evaluate(facts)
    status = FAIL if exit_code(findings) else OK
    md = render(findings, facts, "md")
    # The env renderer's own `###` title sits under this part's heading; keep its subheadings below it.
    return Section("env", "Environment findings", status, summary_line(findings), md,
                   {"facts": facts, "findings": [f.to_dict() for f in findings]})


def repro_section(steps: int | None = None, workers: int = 2) -> Section:
    from fp8doctor import repro

    kwargs: dict[str, Any] = {"progress": False, "workers": workers}
    if steps:
        kwargs["steps"] = steps
    report = repro.run_repro(**kwargs)
    data = repro.to_json_obj(report)
    # The report gives this part its `##` heading; the repro's own title becomes its first line, in bold.
    md = f"**{repro.title(report)}**\n" + repro.render(report, "md", with_title=False)
    headline = str(data.get("verdict") or "").split("\n")[0]
    return Section("repro", "Reproduction of the mixed-precision ValueError", FAIL if report.exit_code() else OK,
                   headline[:300] + ("..." if len(headline) > 300 else ""), md, data)


# The report's matrices. Default: every torchao recipe (and TE's per-tensor recipes, where they can run) through
# the native and Accelerator paths, plus the default recipe through Trainer, `accelerate launch` and 2 processes:
# every entry path and every recipe is covered in about two thirds of the full matrix's time.
QUICK = [{"backends": ["torchao", "te"], "recipes": ["tensorwise", "current"], "entries": ["native", "accelerator"]}]
DEFAULT = [
    {"entries": ["native", "accelerator"]},
    {"backends": ["torchao", "te"], "recipes": ["tensorwise", "delayed_hybrid"],
     "entries": ["trainer", "launch", "multiproc"]},
]


def matrix_section(out_jsonl: str, steps: int, workers: int, scope: str) -> Section:
    from fp8doctor.matrix.command import run_matrix
    from fp8doctor.matrix.render import render, summary, to_json_obj

    selections = {"quick": QUICK, "default": DEFAULT, "full": None}[scope]
    result = run_matrix(steps=steps, workers=workers, out=out_jsonl, selections=selections)
    status = FAIL if result.exit_code() else OK
    return Section("matrix", "FP8 matrix", status, summary(result), render(result, "md"), to_json_obj(result),
                   files=[out_jsonl])


def watch_section(cmd: list[str], timeout: float) -> Section:
    from fp8doctor import watch

    result = watch.run_watch(cmd, timeout)
    verdict = result.get("verdict")
    status = OK if verdict == FP8_ACTIVE and not result.get("exit_code") and not result.get("timed_out") else FAIL
    headline = f"{verdict}: {result.get('reason') or ''}".strip().rstrip(":")
    return Section("watch", "fp8doctor watch of your command", status, headline, watch.render(result, "md"), result)
