"""Run a planned matrix: skipped cells are recorded without spawning, the rest run in isolated child processes
(`fp8doctor.runs.pool.run_spec`) on N worker threads, one GPU per worker when there are GPUs; every result is
appended to the JSON-lines store as it arrives. Checks run once every result is in."""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from fp8doctor.matrix import checks, store
from fp8doctor.matrix.plan import Cell, baseline_spec, native_spec
from fp8doctor.redact import redact
from fp8doctor.render.controls import escape_controls
from fp8doctor.render.progress import Progress
from fp8doctor.runs.spec import RunSpec
from fp8doctor.system import interrupts
from fp8doctor.system.errors import UsageError
from fp8doctor.verdicts import FAIL, RAISED, SKIP, worst_exit

Runner = Callable[[RunSpec], dict[str, Any]]


@dataclass
class Row:
    cell: Cell
    result: dict[str, Any]
    verdicts: list[checks.Verdict]
    status: str
    reused: bool = False

    @property
    def shown(self) -> str:
        """The status as every summary counts it: a cell that raised at a known CPU limit is 'raised' (its
        reason said), though, like a skip, it fails nothing."""
        return RAISED if self.status == SKIP and self.result.get("outcome") == "raised" else self.status


@dataclass
class MatrixResult:
    rows: list[Row]
    wall_s: float
    workers: int
    out: str | None = None
    problems: list[str] = field(default_factory=list)  # unreadable lines found by --resume
    write_error: str | None = None  # the results file stopped taking lines (disk full, removed): the reason

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == FAIL]

    def exit_code(self) -> int:
        return worst_exit(r.status for r in self.rows)


def skipped_result(cell: Cell) -> dict[str, Any]:
    return {"spec": cell.spec.to_dict(), "outcome": "skipped", "skip_reason": cell.skip, "losses": []}


def _default_runner(spec: RunSpec) -> dict[str, Any]:
    from fp8doctor.runs.pool import run_spec

    return run_spec(spec, check_skip=False)  # the plan already asked the machine snapshot


def execute(
    cells: list[Cell],
    workers: int = 1,
    out: str | None = None,
    resume: bool = False,
    runner: Runner | None = None,
    gpu_ids: list[str] | None = None,
    on_result: Callable[[Cell, dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> MatrixResult:
    """Run the cells (baselines come first in `cells`) and check them; `out` gets one JSON line per cell."""
    from fp8doctor.runs.pool import allow_runs
    from fp8doctor.runs.pool import stop_all as pool_stop_all

    t0 = time.monotonic()
    runner = runner or _default_runner
    allow_runs()
    workers = max(1, workers)
    results: dict[str, dict[str, Any]] = {}
    reused: set[str] = set()
    problems: list[str] = []
    sink = store.ResultStore(out) if out else None
    if sink:
        try:
            sink.lock()  # before --resume reads it: a second matrix on this file stops here, before any run
        except OSError as exc:
            raise UsageError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    if sink and resume:
        loaded = store.load(out)
        problems = loaded.problems
        for key in store.reusable_keys(loaded):
            if any(c.key == key for c in cells):
                results[key] = loaded.records[key]["result"]
                reused.add(key)
    if sink:
        sink.open_for_append()
    lock = threading.Lock()

    write_error: list[str] = []

    stopping = threading.Event()  # a run killed by a stop is no measurement: from then on nothing is recorded

    def stop_running() -> None:
        stopping.set()
        pool_stop_all()

    def record(cell: Cell, result: dict[str, Any]) -> None:
        with lock:
            if stopping.is_set():
                return
            results[cell.key] = result
            if sink and not write_error:
                try:
                    sink.append(store.make_record(cell.key, cell.role, result))
                except OSError as exc:  # keep measuring: every result is still rendered at the end
                    write_error.append(exc.strerror or str(exc))
            if on_result:
                on_result(cell, result)

    for cell in cells:
        if cell.skip is not None:
            record(cell, skipped_result(cell))
    todo = [c for c in cells if c.skip is None and c.key not in reused]
    # A multi-process cell needs several GPUs, so on a GPU machine those run last, alone, seeing every GPU.
    pooled = [c for c in todo if not (gpu_ids and c.spec.nproc > 1)]
    alone = [c for c in todo if c not in pooled]
    bar = Progress(len(todo), "matrix", "cell", enabled=progress)
    slots: queue.Queue[str | None] = queue.Queue()
    for i in range(workers):
        slots.put(gpu_ids[i % len(gpu_ids)] if gpu_ids else None)

    def run_one(cell: Cell, pin: bool = True) -> None:
        slot = slots.get() if pin else None
        try:
            spec = cell.spec
            if slot is not None:
                spec = replace(spec, env={**spec.env, "CUDA_VISIBLE_DEVICES": slot, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
            elif not gpu_ids and "OMP_NUM_THREADS" not in os.environ:
                # One thread per CPU run: no oversubscription with --workers N, and the same numerics for any N.
                spec = replace(spec, env={"OMP_NUM_THREADS": "1", **spec.env})
            try:
                result = runner(spec)
            except Exception as exc:  # noqa: BLE001 - the engine never raises; if it does, it is a result
                result = {"spec": spec.to_dict(), "outcome": "crashed", "losses": [],
                          "error": {"type": type(exc).__name__, "message": str(exc), "where": "fp8doctor.matrix"}}
            record(cell, result)
            bar.done(f"{cell.spec.label()}: {result.get('outcome')}")
        finally:
            if pin:
                slots.put(slot)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fp8doctor-matrix")
    try:
        for fut in [pool.submit(run_one, c) for c in pooled]:
            fut.result()
        for cell in alone:
            run_one(cell, pin=False)
    except KeyboardInterrupt as exc:
        # Queued cells are dropped. On Ctrl-C the cells already running finish and are recorded; on SIGTERM/SIGHUP
        # (or a second Ctrl-C) they are killed and not recorded. Either way --resume continues from the file.
        pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(exc, interrupts.Stopped):
            stop_running()
        if out:
            shown = escape_controls(redact(out))
            print(f"fp8doctor matrix: {interrupts.describe(exc)}; finished cells are in {shown} (continue with "
                  f"--resume --out {shown})", file=sys.stderr)
        while True:
            try:
                pool.shutdown(wait=True)
                break
            except KeyboardInterrupt:
                stop_running()
        stop_running()  # a cell run outside the pool (multi-GPU cells) is still in flight
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
        if sink:
            sink.close()
    rows = evaluate(cells, results, reused)
    return MatrixResult(rows, time.monotonic() - t0, workers, out, problems, write_error[0] if write_error else None)


def evaluate(cells: list[Cell], results: dict[str, dict[str, Any]], reused: set[str] | None = None) -> list[Row]:
    rows = []
    for cell in cells:
        result = results.get(cell.key) or skipped_result(cell)
        base = native = None
        if cell.role == "fp8":
            base = results.get(baseline_spec(cell.spec).key())
            native = results.get(native_spec(cell.spec).key())
        verdicts = checks.check_cell(result, base, native)
        rows.append(Row(cell, result, verdicts, checks.cell_status(verdicts), cell.key in (reused or set())))
    return rows
