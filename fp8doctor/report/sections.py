"""The report's parts, each measured by its own command's code and returned as data: a status (one word of
fp8doctor.verdicts.PART_STATUSES) and a summary of what it found, from which the first screen is written.

A part whose code is missing or raises becomes an `error` section with the reason; the report is still written.
Nothing here re-parses rendered text.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.redact import public_facts
from fp8doctor.rules.optimizer import ID as OPTIMIZER_CHECK
from fp8doctor.verdicts import ERROR, FAIL, FAILED, FP8_ACTIVE, NOT_FP8, OK, RAISED, REPRODUCED, SKIP, WARN


@dataclass
class Summary:
    """What a part found, in the first screen's terms. Each entry is one short line."""

    found: list[str] = field(default_factory=list)  # problems: a reproduced bug, a failed check or finding
    off: list[str] = field(default_factory=list)  # trained without error, FP8 silently not on
    worked: list[str] = field(default_factory=list)  # what reached fp8-active here
    warnings: list[str] = field(default_factory=list)
    unchecked: list[tuple[str, str]] = field(default_factory=list)  # (what, why it could not run here)
    ran: str = ""  # one line: what ran, in numbers with their meaning
    # What these library versions do on the reference bug's path, shown but not the user's problem until their
    # stack is seen to contain that path (report/exposure.py): ("found" | "off", line).
    demo: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"found": self.found, "off": self.off, "worked": self.worked, "warnings": self.warnings,
                "unchecked": [list(u) for u in self.unchecked], "ran": self.ran,
                "demo": [list(d) for d in self.demo]}


@dataclass
class Section:
    name: str
    title: str
    status: str  # one of fp8doctor.verdicts.PART_STATUSES
    summary: Summary = field(default_factory=Summary)
    data: Any = None
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    result: Any = None  # the command's own result object, for the details (not serialised)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "status": self.status, "summary": self.summary.to_dict(),
                "seconds": round(self.seconds, 2), "data": self.data}


def guarded(name: str, title: str, build: Callable[[], Section]) -> Section:
    """Run one part; an exception becomes an error section rather than a lost report."""
    import time

    t0 = time.monotonic()
    try:
        section = build()
    except Exception as exc:  # noqa: BLE001 - one broken part must not lose the others' measurements
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{last.filename}:{last.lineno}"
        section = Section(name, title, ERROR, Summary(found=[f"{title} could not run: {type(exc).__name__}: {exc} "
                                                             f"(at {where})"]),
                          {"error": {"type": type(exc).__name__, "message": str(exc), "where": where}})
    section.seconds = time.monotonic() - t0
    return section


def status_of(summary: Summary, anything_ran: bool) -> str:
    """A part's status from its summary: the same rule for every part."""
    if summary.found or summary.off:
        return FAIL
    if summary.warnings:
        return WARN
    return OK if anything_ran else SKIP


def first_sentence(text: str) -> str:
    from fp8doctor.report.notes import sentences

    parts = sentences(text)
    return parts[0] if parts else text


def env_section(config_files: list[str] | None = None) -> Section:
    from fp8doctor.facts.collect import collect_facts
    from fp8doctor.rules import evaluate

    facts = collect_facts(config_paths=config_files or [])
    findings = evaluate(facts)
    s = Summary()
    for f in findings:
        level = f.level.value
        line = f"{f.title} (`{f.id}`)"
        if level in ("fail", "error"):
            s.found.append(line)
        elif level == "warn":
            s.warnings.append(line)
        elif level == "skip" and re.fullmatch(r"backend\.\w+", f.id):
            # A backend this machine lacks: the same reason skips runs in the repro and the matrix (said once).
            s.unchecked.append((f.title, f.detail or f.title))
    counts = {lv: sum(1 for f in findings if f.level.value == lv) for lv in ("ok", "warn", "fail", "error", "skip")}
    s.ran = f"{len(findings)} checks: " + ", ".join(f"{n} {lv}" for lv, n in counts.items() if n)
    if config_files:
        s.ran += f"; linted {len(config_files)} config file(s)"
    elif not facts.get("intent"):
        s.ran += "; no FP8 intent seen, precision checks skipped (`--config FILE` lints yours)"
    return Section("env", "Environment", status_of(s, True), s,
                   {"facts": public_facts(facts), "findings": [f.to_dict() for f in findings],
                    "configs": list(config_files or [])},
                   result=(findings, facts))


def repro_section(steps: int | None = None, workers: int = 2, timeout_s: float | None = None,
                  config_files: list[str] | None = None) -> Section:
    from fp8doctor import repro

    kwargs: dict[str, Any] = {"workers": workers}
    if steps:
        kwargs["steps"] = steps
    if timeout_s:
        kwargs["timeout_s"] = timeout_s
    report = repro.run_repro(config_files or (), **kwargs)
    data = repro.to_json_obj(report)
    s = repro_summary(data)
    ran = [r for r in data["rows"] if (r.get("result") or {}).get("outcome") != "skipped"]
    return Section("repro", "Reproduction of the mixed-precision ValueError", status_of(s, bool(ran)), s, data,
                   result=report)


def repro_summary(data: dict[str, Any]) -> Summary:
    """The repro's rows (repro.to_json_obj) in the first screen's terms."""
    s = Summary()
    for row in data["rows"]:
        res = row.get("result") or {}
        verdict, label = row["verdict"], row["label"]
        # A row that runs the reference report's patch (the buggy rows, and your config under the patch) shows what
        # the library versions do: the user's problem only where exposure.judge finds the patch in their stack.
        entry = str((res.get("spec") or {}).get("entry") or "")
        demo = (row["kind"] == "buggy" and bool(row.get("as_expected"))) or (
            row["kind"] == "yours" and entry.startswith("buggy_patch"))
        if verdict == REPRODUCED:
            err = res.get("error") or {}
            line = (f"{label}: reproduced, {err.get('type', 'error')} \"{err.get('message', '')}\" "
                    f"(at {err.get('where', '?')})")
            if demo:
                s.demo.append(("found", line))
            else:
                s.found.append(line)
        elif verdict in NOT_FP8:
            line = f"{label}: {verdict} ({row.get('reason')})"
            if demo:
                s.demo.append(("off", line))
            else:
                s.off.append(line)
        elif verdict == FAILED:
            (s.warnings if row.get("as_expected") else s.found).append(f"{label}: failed ({row.get('reason')})")
        elif verdict == FP8_ACTIVE and row["kind"] != "buggy" and not demo:
            s.worked.append(label)
        elif res.get("outcome") == "skipped":
            s.unchecked.append((label, res.get("skip_reason") or row.get("reason") or ""))
    ran = [r for r in data["rows"] if (r.get("result") or {}).get("outcome") != "skipped"]
    s.ran = (f"{len(ran)} of {len(data['rows'])} paths ran ({data['backend']}:{data['recipe']}, tiny Llama): "
             + ", ".join(f"{n} {v}" for v, n in _count(r["verdict"] for r in data["rows"]).items()))
    return s


def apply_exposure(part: Section, exposed: bool) -> None:
    """Count the repro's demonstration against the user's setup when their stack contains the buggy path."""
    if part.name != "repro" or part.status == ERROR or not exposed:
        return
    for bucket, line in part.summary.demo:
        getattr(part.summary, bucket).append(line)
    part.summary.demo = []
    part.status = status_of(part.summary, True)


def _count(words: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in words:
        out[w] = out.get(w, 0) + 1
    return out


# The report's matrices. Default: every torchao recipe (and TE's per-tensor recipes, where they can run) through
# the native and Accelerator paths, plus the default recipe through Trainer, `accelerate launch` and 2 processes:
# every entry path and every recipe is covered in about two thirds of the full matrix's time.
QUICK = [{"backends": ["torchao", "te"], "recipes": ["tensorwise", "current"], "entries": ["native", "accelerator"]}]
DEFAULT = [
    {"entries": ["native", "accelerator"]},
    {"backends": ["torchao", "te"], "recipes": ["tensorwise", "delayed_hybrid"],
     "entries": ["trainer", "launch", "multiproc"]},
]


LIBRARY_NOTE = (". This is what these library versions do on the matrix's plain entry path (Accelerate's own "
                f"torchao config), not counted against your setup: `env` checks yours (`{OPTIMIZER_CHECK}`) "
                "and prints the fix")


def matrix_section(out_jsonl: str, steps: int, workers: int, scope: str, timeout_s: float | None = None) -> Section:
    from fp8doctor.matrix.command import run_matrix
    from fp8doctor.matrix.divergence import LIBRARY_BEHAVIOUR_CHECKS
    from fp8doctor.matrix.render import to_json_obj

    selections = {"quick": QUICK, "default": DEFAULT, "full": None}[scope]
    kwargs: dict[str, Any] = {"timeout_s": timeout_s} if timeout_s else {}
    result = run_matrix(steps=steps, workers=workers, out=out_jsonl, selections=selections, **kwargs)
    s = Summary()
    flagged: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (level, check) -> [(cell, detail)]
    for row in result.rows:
        label = row.cell.spec.label()
        if row.status == SKIP:
            why = row.verdicts[0].detail if row.verdicts else ""
            s.unchecked.append((label + (" (raised)" if row.shown == RAISED else ""), why))
            continue
        for v in row.verdicts:
            level = v.level.value
            if level in ("fail", "error", "warn"):
                flagged.setdefault(("warn" if level == "warn" else "fail", v.check), []).append((label, v.detail))
        if row.cell.role == "fp8" and row.status in ("pass", "warn"):
            s.worked.append(label)
    for (level, check), cells in flagged.items():
        names = ", ".join(c for c, _ in cells[:3]) + (f" and {len(cells) - 3} more" if len(cells) > 3 else "")
        line = f"`{check}` in {len(cells)} cell(s) ({names}), e.g. {cells[0][1]}"
        if level == "fail" and check in LIBRARY_BEHAVIOUR_CHECKS:
            s.warnings.append(line + LIBRARY_NOTE)
            continue
        (s.warnings if level == "warn" else s.found).append(line)
    counts = _count(r.shown for r in result.rows)
    ran = len(result.rows) - counts.get(SKIP, 0)
    s.ran = (f"{ran} of {len(result.rows)} cells ran (FP8 cells and their bf16 baselines): "
             + ", ".join(f"{n} {st}" for st, n in counts.items()) + f"; {result.wall_s:.0f} s with {result.workers} "
             f"worker(s)")
    data = to_json_obj(result)
    data.pop("out", None)  # a local path: the report names no local file
    return Section("matrix", "FP8 matrix", status_of(s, bool(ran)), s, data, files=[out_jsonl], result=result)


def watch_section(cmd: list[str], timeout: float) -> Section:
    from fp8doctor import watch

    result = watch.run_watch(cmd, timeout)
    verdict = result.get("verdict")
    s = Summary()
    line = f"your command: {verdict}: {result.get('reason') or ''}".strip().rstrip(":")
    if result.get("timed_out") or result.get("exit_code"):
        s.found.append(f"your command ended with exit code {result.get('exit_code')}"
                       + (" (stopped by --command-timeout)" if result.get("timed_out") else ""))
    if verdict == FP8_ACTIVE:
        s.worked.append(line)
    elif verdict in NOT_FP8:
        s.off.append(line)
    else:
        s.found.append(line)
    import shlex

    ranks = result.get("ranks") or []
    s.ran = (f"`{shlex.join(cmd)}`: {verdict}, {len(ranks)} rank(s), exit code {result.get('exit_code')}"
             + (" (stopped by --command-timeout)" if result.get("timed_out") else ""))
    return Section("watch", "Your command under fp8doctor watch", status_of(s, True), s, result, result=result)


def inspect_section(model: str, gpu: str | None) -> Section:
    """The user's model from its config (`fp8doctor inspect --model`): layers no FP8 path can take by shape."""
    from fp8doctor.inspect.command import inspect_model
    from fp8doctor.knowledge.shapes import TARGETS

    data = inspect_model(model, gpu=gpu, batch=4, seq_len=2048)
    s = Summary()
    by_shape = {t: sum(1 for x in data["layers"] if x["targets"][t]["status"] != "fp8"
                       and ("divisible" in x["targets"][t]["reason"] or x["targets"][t]["status"] == "fails"))
                for t in TARGETS}
    for t, n in by_shape.items():
        if n:
            s.warnings.append(f"{TARGETS[t]['label']}: {n} Linear layer(s) of your model cannot run in FP8 because "
                              "of their shape (see the layer table)")
    cover = ", ".join(f"{c['label']} {100 * c['flops_share']:.1f}%" for c in data["coverage"].values())
    s.ran = f"{data['model']['linear_layers']} Linear layers of {data['model']['architecture']}; FP8 share of " \
            f"Linear FLOPs: {cover}"
    est = data.get("estimate")
    if est:
        best = max((e["speedup"] for e in est["targets"].values() if e["supported"]), default=None)
        if best is not None:
            s.ran += f"; estimated step speed-up on {est['gpu']} up to {best:.2f}x"
    return Section("inspect", "Your model's Linear layers in FP8", status_of(s, True), s, data, result=data)
