"""`fp8doctor watch [--command-timeout S] [--format F] [--records DIR] -- CMD ARGS...` and
`fp8doctor watch --merge DIR`: run a training command and say whether FP8 ran; across nodes, one verdict for the job."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from fp8doctor.commands.options import COMMAND_TIMEOUT_HELP
from fp8doctor.knowledge.numerics import DEFAULT_EVERY
from fp8doctor.system import limits, safeio
from fp8doctor.system.errors import UsageError
from fp8doctor.verdicts import FAIL

MERGE_WAIT_S = 60.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "watch",
        help="run a training command and report what FP8 really did inside it",
        description="Run CMD unchanged with an observer injected into every Python process it starts "
        "(accelerate launch and torchrun ranks included) and report, per rank, whether FP8 was active, "
        "silently replaced by another precision, or raised, with the fix (exit codes below). Multi-node: wrap each "
        "node's launcher in `watch --records DIR` (DIR "
        "shared by the nodes); the watch holding rank 0 merges when every node is done, or run `watch --merge DIR`.",
    )
    p.add_argument("--command-timeout", type=float, metavar="S", help=COMMAND_TIMEOUT_HELP + " (default: none)")
    # Before 0.1.1 this was --timeout; kept working, hidden: --timeout means one run's limit in the other commands.
    p.add_argument("--timeout", type=float, dest="old_timeout", help=argparse.SUPPRESS)
    p.add_argument("--format", choices=("text", "md", "json"), default="text",
                   help="report format (md and json: CMD's stdout goes to stderr, so that stdout holds only the "
                        "report and `> report.md` captures it cleanly)")
    p.add_argument("--output", metavar="FILE",
                   help="write the report to FILE instead of stdout; CMD's output is left where it was")
    p.add_argument("--records", metavar="DIR",
                   help="keep every process's records under DIR/<host>/<rank>-<pid>.jsonl (a directory the nodes "
                   "share); the watch holding rank 0 prints the job's merged table when all nodes are done")
    p.add_argument("--merge", metavar="DIR", help="run nothing: merge the records in DIR into the job's table")
    p.add_argument("--merge-wait", type=float, metavar="S", default=MERGE_WAIT_S,
                   help="with --records: how long the rank-0 watch waits for the other nodes to end before "
                   "merging")
    p.add_argument("--numerics", action="store_true",
                   help="also sample each FP8 layer's numerics (torchao, TE Linear; amax, underflow, saturation, "
                        "SQNR against the matmul in high precision) and name the layers below the SQNR threshold; also "
                        "records each backward's gradient norm")
    p.add_argument("--numerics-every", type=int, default=DEFAULT_EVERY, metavar="K",
                   help="with --numerics: sample each FP8 layer once every K of its forward calls")
    p.add_argument("--baseline", metavar="RECORD",
                   help="compare this (FP8) run's per-step loss and gradient norm, rank by rank, with the same "
                        "command watched in bf16 (RECORD: that watch's --format json report), under Transformer "
                        "Engine's and torchao's own test tolerances; a loss outside them fails (exit 1), a "
                        "gradient norm outside them warns")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to watch")
    p.set_defaults(func=run)
    return p


def _merge_only(args: argparse.Namespace, cmd: list[str]) -> int:
    from fp8doctor.watch.merge import exit_code, merge
    from fp8doctor.watch.render_job import render_job

    if cmd or args.records:
        raise UsageError("--merge DIR runs no command: use it alone (`fp8doctor watch --merge DIR`)")
    job = merge(args.merge)
    _emit(args.output, render_job(job, args.format))
    return exit_code(job)


def _own_failure(result: dict[str, Any]) -> bool:
    return bool(result.get("timed_out") or result.get("signal") or result.get("exit_code"))


def _merge_after(result: dict[str, Any], wait_s: float) -> dict[str, Any] | None:
    """The job, when this watch holds rank 0 and every node's watch is done within wait_s; else None (said why)."""
    from fp8doctor.watch.merge import merge, wait_until_done

    place = result.get("records") or {}
    if not place.get("leader"):
        return None
    expected = place.get("expected_watches")
    if not wait_until_done(place["dir"], expected, wait_s):
        print(f"fp8doctor watch: not every node's watch was done after {wait_s:g} s (expected "
              f"{expected or 'unknown'}); merge later with `fp8doctor watch --merge {place['dir']}`", file=sys.stderr)
        return None
    try:
        return merge(place["dir"])
    except UsageError as exc:
        print(f"fp8doctor watch: nothing to merge: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if args.merge is not None:
        return _merge_only(args, cmd)
    from fp8doctor.watch import run_watch
    from fp8doctor.watch.render import render
    from fp8doctor.watch.runner import exit_code

    if not cmd:
        raise UsageError("no command to watch: usage `fp8doctor watch [options] -- CMD ARGS...`")
    if args.old_timeout is not None:
        print("fp8doctor watch: --timeout is deprecated here, use --command-timeout (the same limit on the whole "
              "command)", file=sys.stderr)
        if args.command_timeout is None:
            args.command_timeout = args.old_timeout
    limits.check_timeout(args.command_timeout, "--command-timeout")
    limits.check_wait(args.merge_wait, "--merge-wait")
    if args.output:
        safeio.check_can_write(args.output, "the report")  # refused now, not after a long training; FILE untouched
    # A machine-readable report on stdout must not be interleaved with the command's own output.
    shared = args.format in ("md", "json") and not args.output
    env = None
    from fp8doctor.watch.observe_health import GRAD_NORMS_ENV, NUMERICS_ENV

    if args.numerics:
        if not 1 <= args.numerics_every <= 1_000_000:
            raise UsageError(f"--numerics-every must be between 1 and 1000000 (got {args.numerics_every})")
        env = {**os.environ, NUMERICS_ENV: str(args.numerics_every), GRAD_NORMS_ENV: "1"}
    baseline = None
    if args.baseline is not None:
        from fp8doctor.watch import baseline as divergence

        baseline = divergence.load(args.baseline)  # bad input: exit 2 before the command runs
        env = {**(env or os.environ), GRAD_NORMS_ENV: "1"}
    result = run_watch(cmd, args.command_timeout, stdout=sys.stderr if shared else None, records_dir=args.records,
                       env=env)
    code = exit_code(result)
    if baseline is not None:
        result["divergence"] = divergence.compare(result, baseline)
        if code == 0 and result["divergence"]["level"] == FAIL:
            code = 1
    job = _merge_after(result, args.merge_wait) if args.records else None
    if job is None:
        text = render(result, args.format)
    else:
        from fp8doctor.watch.merge import exit_code as job_exit_code
        from fp8doctor.watch.render_job import render_job

        if args.format == "json":
            text = render({**result, "job": job}, "json")
        else:
            text = render(result, args.format) + "\n" + render_job(job, args.format)
        code = code if _own_failure(result) else job_exit_code(job)
    _emit(args.output, text)
    return code


def _emit(output: str | None, text: str) -> None:
    if not output:
        sys.stdout.write(text)
        return
    try:
        _write(output, text)
    except UsageError:
        sys.stdout.write(text)  # the run is not lost
        raise


def _write(path: str, text: str) -> None:
    try:
        with safeio.open_write(path, "--output") as fh:
            fh.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
