"""Assemble the report: measure each part, then write `fp8doctor-report-<time>.md` and its `.json` twin
(plus the loss-curve PNG and the matrix's JSON lines) into the output folder. Everything passes redaction."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fp8doctor import SCHEMA_VERSION, __version__
from fp8doctor.facts.environ import report_env
from fp8doctor.redact import redact
from fp8doctor.render.progress import Progress
from fp8doctor.report import curves, exposure, sections
from fp8doctor.report.markdown import render_markdown
from fp8doctor.report.verdict import headline
from fp8doctor.system import safeio
from fp8doctor.system.errors import UsageError

QUICK_STEPS = 6


@dataclass
class Options:
    out_dir: str = "reports"
    steps: int | None = None
    workers: int = 2
    quick: bool = False
    full: bool = False
    watch_cmd: list[str] = field(default_factory=list)
    watch_timeout: float = 600.0  # the watched command's limit (--command-timeout)
    run_timeout: float | None = None  # one training run's limit (--timeout); None: the commands' default
    config_files: list[str] = field(default_factory=list)
    progress: bool = True
    skip_parts: tuple[str, ...] = ()  # parts left out (tests; never set from the CLI)
    model: str | None = None  # --model: the user's model config, inspected as `fp8doctor inspect` does
    gpu: str | None = None  # --gpu: the GPU of that inspection's speed estimate


@dataclass
class Report:
    data: dict[str, Any]
    markdown: str
    md_path: str
    json_path: str
    png_path: str | None
    jsonl_path: str
    exit_code: int

    @property
    def files(self) -> list[str]:
        return [p for p in (self.md_path, self.json_path, self.png_path, self.jsonl_path) if p and os.path.exists(p)]


def _no_dir(arg: str) -> str:
    """A command-line argument as the report shows it: a path by its last part (the report names no local file)."""
    return os.path.basename(arg.rstrip(os.sep)) or arg if os.sep in arg else arg


def stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def ensure_writable(out_dir: str) -> None:
    """Fail before measuring anything: minutes of runs must not end in 'cannot write'."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"cannot write the report into {out_dir}: it exists and is not a directory")
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".fp8doctor-write-test-{os.getpid()}")
        with open(probe, "w") as fh:
            fh.write("")
        os.remove(probe)
    except OSError as exc:
        raise UsageError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None


def relevant_env() -> dict[str, str]:
    return report_env(os.environ)


def versions() -> dict[str, str | None]:
    from fp8doctor.facts.packages import version_of
    from fp8doctor.system import target

    diagnosed = target.snapshot()
    out: dict[str, str | None] = {"fp8doctor": __version__, "python": diagnosed["python"],
                                  "platform": diagnosed["system"]}
    for dist in ("torch", "accelerate", "transformers", "torchao", "transformer-engine", "numpy", "tabulate",
                 "matplotlib"):
        out[dist] = version_of(dist)
    return out


def overall(parts: list[sections.Section]) -> tuple[str, int]:
    """One verdict for the top of the report and the exit code: a pure function of the parts' statuses (and of
    whether the repro showed the reference bug outside the user's stack)."""
    demo = any(p.summary.demo for p in parts)
    return headline([(p.title, p.status) for p in parts], demo=demo)


def judge_exposure(parts: list[sections.Section], config_files: list[str]) -> exposure.Exposure:
    """Whether the user's stack contains the reference bug's path; the repro part is re-judged by it."""
    by_name = {p.name: p for p in parts}
    env, watch = by_name.get("env"), by_name.get("watch")
    facts = env.data.get("facts") if env is not None and isinstance(env.data, dict) else None
    watched = watch.data if watch is not None and isinstance(watch.data, dict) else None
    found = exposure.judge(facts, watched, config_files)
    if "repro" in by_name:
        sections.apply_exposure(by_name["repro"], found.exposed)
    return found


def machine_gpu() -> str | None:
    """The GPU line of the first screen; None on a machine without a CUDA GPU (the Markdown says CPU emulation)."""
    from fp8doctor.runs.machine import snapshot

    facts = snapshot()
    if not facts.get("gpu_count"):
        return None
    cc = facts.get("cc")
    return f"{facts['gpu_count']} CUDA GPU(s), lowest compute capability {cc[0]}.{cc[1]}" if cc else \
        f"{facts['gpu_count']} CUDA GPU(s)"


def build(opts: Options) -> Report:
    if opts.watch_cmd is None:
        opts.watch_cmd = []
    ensure_writable(opts.out_dir)
    t0 = time.monotonic()
    base = os.path.join(opts.out_dir, f"fp8doctor-report-{stamp()}")
    md_path, json_path, png_path, jsonl_path = base + ".md", base + ".json", base + "-loss.png", base + ".matrix.jsonl"
    steps = opts.steps or (QUICK_STEPS if opts.quick else 8)
    scope = "quick" if opts.quick else ("full" if opts.full else "default")
    plan: list[tuple[str, str, Any]] = [
        ("env", "Environment", lambda: sections.env_section(opts.config_files)),
        ("repro", "Reproduction of the mixed-precision ValueError", lambda: sections.repro_section(
            opts.steps, opts.workers, opts.run_timeout, opts.config_files)),
        ("matrix", "FP8 matrix", lambda: sections.matrix_section(jsonl_path, steps, opts.workers, scope,
                                                                 opts.run_timeout)),
    ]
    if opts.model:
        plan.append(("inspect", "Your model's Linear layers in FP8", lambda: sections.inspect_section(opts.model,
                                                                                                     opts.gpu)))
    if opts.watch_cmd:
        plan.append(("watch", "Your command under fp8doctor watch",
                     lambda: sections.watch_section(opts.watch_cmd, opts.watch_timeout)))
    plan = [p for p in plan if p[0] not in opts.skip_parts]
    stages = Progress(len(plan), "report", "part", enabled=opts.progress)
    parts: list[sections.Section] = []
    for name, title, run in plan:
        part = sections.guarded(name, title, run)
        parts.append(part)
        stages.done(f"{name}: {part.status} ({part.seconds:.0f} s)")
    stages.close()
    matrix = next((p for p in parts if p.name == "matrix" and isinstance(p.data, dict)), None)
    pairs = curves.curve_pairs(matrix.data) if matrix else []
    gpu = machine_gpu()
    png = curves.plot_png(pairs, png_path, emulated=gpu is None) if pairs else None
    exposed = judge_exposure(parts, opts.config_files)
    verdict, code = overall(parts)
    data = redact({
        "schema_version": SCHEMA_VERSION,
        "kind": "fp8doctor.report",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["fp8doctor", "report"] + [_no_dir(a) for a in sys.argv[2:]])
        if sys.argv[1:2] == ["report"] else None,
        "verdict": verdict,
        "gpu": gpu,
        "exit_code": code,
        "wall_s": round(time.monotonic() - t0, 1),
        "options": {"steps": steps, "workers": opts.workers, "quick": opts.quick, "full": opts.full,
                    "timeout_s": opts.run_timeout, "configs": [os.path.basename(c) for c in opts.config_files],
                    "watch": opts.watch_cmd or None, "model": os.path.basename(opts.model or "") or None,
                    "gpu": opts.gpu},
        "exposure": {"exposed": exposed.exposed, "how": exposed.how, "sentence": exposed.sentence()},
        "parts": [p.to_dict() for p in parts],
        "loss_curves": {"png": os.path.basename(png) if png else None, "cells": pairs,
                        "final_fp8_minus_bf16": [curves.final_diff(p) for p in pairs]},
        "versions": versions(),
        "environment": relevant_env(),
    })
    md = redact(render_markdown(data, parts, os.path.basename(png) if png else None, pairs,
                                plot_missing=bool(pairs) and png is None))
    report = Report(data, md, md_path, json_path, png, jsonl_path, code)
    write(report)
    return report


def write(report: Report) -> None:
    """Write both files; on failure print the Markdown to stdout so the measurements are not lost."""
    try:
        with safeio.open_write(report.md_path) as fh:
            fh.write(report.markdown)
        with safeio.open_write(report.json_path) as fh:
            json.dump(report.data, fh, indent=2, default=str)
            fh.write("\n")
    except OSError as exc:
        sys.stdout.write(report.markdown + "\n")
        raise UsageError(f"cannot write {report.md_path}: {exc.strerror or exc} (the report was printed above)") \
            from None
