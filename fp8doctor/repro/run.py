"""Run a repro plan: every row's RunSpec in its own child process (fp8doctor.runs.pool), each result classified
(fp8doctor.runs.verdicts); the caller's FP8-relevant variables recorded, never inherited."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fp8doctor.repro.plan import DEFAULT_STEPS, DEFAULT_TIMEOUT_S, Plan, Row, build_plan, load_user_configs
from fp8doctor.runs.pool import CONTROLLED_ENV
from fp8doctor.runs.spec import RunSpec
from fp8doctor.system.errors import UsageError
from fp8doctor.verdicts import FP8_ACTIVE


@dataclass
class ReproReport:
    plan: Plan
    caller_env: dict[str, str]
    wall_s: float = 0.0
    environment: str | None = None  # why the training stack cannot import here (its rows were not run)

    @property
    def rows(self) -> list[Row]:
        return self.plan.rows

    def fixed_active(self) -> list[Row]:
        return [r for r in self.rows if r.kind == "fixed" and r.verdict == FP8_ACTIVE]

    def exit_code(self) -> int:
        return 0 if self.fixed_active() else 1


def caller_fp8_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's variables the runs do not inherit (recorded and shown, never silently used)."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in sorted(environ.items()) if CONTROLLED_ENV.match(k)}


def run_repro(config_paths: Sequence[str] = (), backend: str = "auto", steps: int = DEFAULT_STEPS,
              timeout_s: float = DEFAULT_TIMEOUT_S, workers: int | None = None, progress: bool = True
              ) -> ReproReport:
    """Plan, run and classify; UsageError on bad input. The returned report renders itself (render())."""
    import time

    from fp8doctor.runs.pool import run_specs
    from fp8doctor.runs.verdicts import classify

    if backend not in ("auto", "te", "torchao"):
        raise UsageError(f"unknown backend {backend!r}; choose auto, te or torchao")
    if steps < 2:
        raise UsageError("--steps must be at least 2 (the loss has to be seen falling)")
    if timeout_s <= 0:
        raise UsageError("--timeout must be positive")
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    configs = load_user_configs(config_paths)
    work_dir = tempfile.mkdtemp(prefix="fp8doctor-repro-")
    t0 = time.perf_counter()
    try:
        plan = build_plan(backend, configs, steps=steps, timeout_s=timeout_s, work_dir=work_dir)
        workers = workers or max(1, min(2, os.cpu_count() or 1))
        from fp8doctor.render.progress import Progress

        bar = Progress(len(plan.rows), "repro", "run", enabled=progress)

        def done(spec: RunSpec, result: dict[str, Any]) -> None:
            bar.done(f"{spec.entry}: {result.get('outcome')}")

        try:
            results = run_specs([r.spec for r in plan.rows], workers=workers, on_result=done)
        finally:
            bar.close()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    for row, result in zip(plan.rows, results, strict=True):
        row.result = result
        v = classify(result)
        row.verdict, row.reason = v.name, v.reason
    return ReproReport(plan=plan, caller_env=caller_fp8_env(), wall_s=time.perf_counter() - t0,
                       environment=broken_environment(plan))


def broken_environment(plan: Plan) -> str | None:
    """The sentence naming the import the plan's runs need and the environment cannot do, or None."""
    from fp8doctor.facts.stack_import import broken_sentence
    from fp8doctor.runs.machine import run_imports, stack_import

    needed = tuple(dict.fromkeys(name for row in plan.rows for name in run_imports(row.spec)))
    return broken_sentence(stack_import(), needed)


