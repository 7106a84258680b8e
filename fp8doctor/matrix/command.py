"""`fp8doctor matrix` from parsed arguments to exit code (the CLI module only declares the options)."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from typing import Any

from fp8doctor.matrix import plan, render, run
from fp8doctor.runs.machine import snapshot
from fp8doctor.system import limits, safeio
from fp8doctor.system.errors import UsageError


def default_out(out_dir: str = "reports") -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return os.path.join(out_dir, f"fp8doctor-matrix-{stamp}.jsonl")


def check_writable(path: str) -> None:
    """Create the folder and the file if needed, without touching an existing file's content (--resume reads
    it first, truncated last line included)."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        safeio.open_append(path, "the results file").close()
    except OSError as exc:
        raise UsageError(f"cannot write results to {path}: {exc.strerror or exc}") from None


def gpu_slots(facts: dict[str, Any]) -> list[str]:
    return [str(g["index"]) for g in facts.get("gpus") or []]


def run_matrix(
    backends: list[str] | None = None,
    recipes: list[str] | None = None,
    entries: list[str] | None = None,
    steps: int = plan.DEFAULT_STEPS,
    size: str = plan.DEFAULT_SIZE,
    seeds: list[int] | None = None,
    workers: int = 1,
    out: str | None = None,
    resume: bool = False,
    timeout_s: float = 300.0,
    selections: list[dict[str, Any]] | None = None,
    compile_axis: bool = False,
    numerics_every: int = 0,
) -> run.MatrixResult:
    """Plan and execute; UsageError for bad selections or an unwritable results file. `selections` (a list of
    backends/recipes/entries dicts) replaces the single selection with their union."""
    limits.check_workers(workers)
    limits.check_timeout(timeout_s)
    limits.check_steps(steps)
    limits.check_seeds(seeds)
    if not 0 <= numerics_every <= 1_000_000:
        raise UsageError(f"--numerics-every must be between 0 and 1000000 (got {numerics_every})")
    if resume and not out:
        raise UsageError("--resume needs --out FILE.jsonl (the results file of the matrix to continue)")
    if out and os.path.isdir(out):
        raise UsageError(f"--out {out} is a directory; give a FILE.jsonl")
    facts = snapshot()
    if selections:
        cells = plan.plan_union(facts, selections, steps=steps, size=size, seeds=seeds or [0], timeout_s=timeout_s,
                                compile_axis=compile_axis, numerics_every=numerics_every)
    else:
        cells = plan.plan(facts, backends, recipes, entries, steps, size, seeds or [0], timeout_s, compile_axis,
                          numerics_every)
    if out:
        check_writable(out)
    gpus = gpu_slots(facts)
    if gpus:
        workers = min(workers, len(gpus))  # one GPU per worker
    return run.execute(cells, workers=workers, out=out, resume=resume, gpu_ids=gpus or None)


def main(args: Any) -> int:
    if args.resume and not args.out:
        raise UsageError("--resume needs --out FILE.jsonl (the results file of the matrix to continue)")
    out = args.out or default_out()
    result = run_matrix(args.backend, args.recipe, args.entry, args.steps, args.size, args.seed, args.workers,
                        out, args.resume, args.timeout, compile_axis=args.compile,
                        numerics_every=args.numerics_every)
    sys.stdout.write(render.render(result, args.format) + "\n")
    if result.write_error:
        sys.stdout.flush()
        raise UsageError(f"cannot write results to {out}: {result.write_error} (every result is printed above)")
    return result.exit_code()
