"""The frontend a watched command starts (`axolotl train cfg.yaml`, `python -m axolotl.cli.train`, `accelerate
launch -m axolotl.cli.train`, or a script that runs one of them), and its verdict when it ended the run before any
Accelerator was built: the frontend named, its own exception quoted, its fix given instead of the generic one."""

from __future__ import annotations

from typing import Any

from fp8doctor.knowledge.command_forms import parse, parse_process
from fp8doctor.knowledge.frontends import Frontend, frontend_of_command
from fp8doctor.verdicts import NO_ACCELERATOR

QUOTE_CHARS = 400


def _started(proc: dict[str, Any]) -> tuple[Frontend, list[str]] | None:
    """The frontend this observed process ran and its command line, the first it had (before any exec)."""
    for run in [*(proc.get("exec_from") or []), proc]:
        form = parse_process(run.get("argv") or [], run.get("executable"))
        found = frontend_of_command(form)
        if found is not None:
            return found, list(form.argv)
    return None


def process_frontend(proc: dict[str, Any]) -> Frontend | None:
    """The frontend this observed process runs, from its own command line."""
    started = _started(proc)
    return started[0] if started else None


def frontend_run(cmd: list[str], procs: list[dict[str, Any]]) -> tuple[Frontend, list[str]] | None:
    """The frontend and the command that starts it: the watched command where it is the frontend's own form, else
    the outermost observed process that is (its launcher, not the rank it started), as first started (axolotl's
    entry point execs `accelerate launch -m axolotl.cli.train ...` in its own process)."""
    found = frontend_of_command(parse(cmd))
    if found is not None:
        return found, list(cmd)
    runs = [(p, run) for p in procs if (run := _started(p)) is not None]
    pids = {p.get("pid") for p, _ in runs}
    return next((run for p, run in runs if p.get("ppid") not in pids), None)


def first_exception(procs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The exception raised deepest in the process tree (the cause; a launcher above it only reports the exit)."""
    raised = [p for p in procs if p.get("exception")]
    by_pid = {p.get("pid"): p for p in procs}
    above: set[Any] = set()
    for p in raised:
        parent, seen = by_pid.get(p.get("ppid")), 0
        while parent is not None and seen < 16:
            above.add(parent.get("pid"))
            parent, seen = by_pid.get(parent.get("ppid")), seen + 1
    return next((p["exception"] for p in raised if p.get("pid") not in above), None)


def _quote(exc: dict[str, Any]) -> str:
    message = " ".join(str(exc.get("message") or "").split())
    if len(message) > QUOTE_CHARS:
        message = message[:QUOTE_CHARS] + " ..."
    return f"{exc.get('type')}: {message}"


def frontend_stopped(verdict: dict[str, Any], procs: list[dict[str, Any]], cmd: list[str],
                     facts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The verdict and fix facts with the frontend the command starts: named where it ended the run before an
    Accelerator, and its command (the one the user started it with) the one its fix is rendered for."""
    run = frontend_run(cmd, procs)
    if run is None:
        return verdict, facts
    found, command = run
    facts = {**facts, "frontend": facts.get("frontend") or found.name, "command": command}
    if verdict.get("verdict") != NO_ACCELERATOR:
        return verdict, facts
    exc = first_exception(procs)
    reason = (f"{found.name} stopped the run before any Accelerator was built: {_quote(exc)}" if exc else
              f"the {found.name} run ended before building an Accelerator ({verdict.get('reason')})")
    return {**verdict, "reason": reason, "winner": found.name, "frontend": found.name}, facts
