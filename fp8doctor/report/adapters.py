"""Calls into the repro and watch commands' own code, shaped as report sections."""

from __future__ import annotations

import importlib.util
from typing import Any

from fp8doctor.report.sections import Section
from fp8doctor.verdicts import ERROR, FAIL, FP8_ACTIVE, OK


def run_repro_for_report(steps: int | None = None, workers: int = 2) -> Section:
    from fp8doctor import repro

    kwargs: dict[str, Any] = {"progress": False, "workers": workers}
    if steps:
        kwargs["steps"] = steps
    report = repro.run_repro(**kwargs)
    md = repro.render(report, "md")
    # The repro renders its own `##` title; the report already gives this part a heading.
    lines = md.splitlines()
    if lines and lines[0].startswith("## "):
        md = "**" + lines[0][3:] + "**\n" + "\n".join(lines[1:])
    data = repro.to_json_obj(report)
    code = report.exit_code()
    headline = str(data.get("verdict") or "").split("\n")[0]
    return Section("repro", "Reproduction of the mixed-precision ValueError", FAIL if code else OK,
                   headline[:300] + ("..." if len(headline) > 300 else ""), md, data)


def run_watch_for_report(cmd: list[str], timeout: float) -> Section:
    if importlib.util.find_spec("fp8doctor.watch") is None:
        return Section("watch", "fp8doctor watch of your command", ERROR,
                       "fp8doctor watch is not available in this installation", "")
    from fp8doctor import watch

    result = watch.run_watch(cmd, timeout)
    md = watch.render(result, "md")
    verdict = result.get("verdict")
    status = OK if verdict == FP8_ACTIVE and not result.get("exit_code") and not result.get("timed_out") else FAIL
    headline = f"{verdict}: {result.get('reason') or ''}".strip().rstrip(":")
    return Section("watch", "fp8doctor watch of your command", status, headline, md, result)
