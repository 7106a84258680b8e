"""Warm workers against fresh interpreters, measured in one invocation and reported as ratios.

    python benchmarks/warm_vs_cold.py [--repeat 3] [--steps 4] [--matrix-workers 2] [--skip-matrix]
                                      [--skip-repro] [--skip-report]

1. per-run overhead: one short run (torchao tensorwise via the Accelerator, CPU emulation) through
   `fp8doctor.runs.pool.run_spec`, warm and cold interleaved; overhead = the pool's wall time minus the training
   steps (`timings_s.steps`). The first warm run also pays for starting the warm server and is shown apart.
2. the full CPU matrix (`fp8doctor matrix --steps N`, every backend: TE cells are skipped without a GPU) with
   `--workers 1` and `--workers 2`, each warm and `--cold`, as a user runs it;
3. `fp8doctor repro`, warm and `--cold`;
4. `fp8doctor report --quick`, warm and `--cold` (into a temporary folder);
5. `fp8doctor env` against `accelerate env` (env starts no run; the ratio checks it stayed light).

Every row carries the machine's 1-minute load average before and after its measurement: on a shared machine the
absolute seconds move with it, the warm/cold ratios (cold and warm taken back to back) much less.

Targets (issues 12 and 24, idle 2-core CPU machine): overhead warm/cold <= 0.25; matrix --workers 2 warm <= 45 s
and warm/cold <= 0.5; repro warm <= 15 s and warm/cold <= 0.5; env/accelerate env <= 0.3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from tabulate import tabulate


def one_run(cold: bool, steps: int) -> dict[str, float]:
    from fp8doctor.runs import warm
    from fp8doctor.runs.pool import run_spec
    from fp8doctor.runs.spec import RunSpec

    warm.prefer_cold(cold)
    r = run_spec(RunSpec(backend="torchao", recipe="tensorwise", entry="accelerator", steps=steps))
    if r["outcome"] != "finished":
        raise SystemExit(f"the run did not finish: {r['outcome']} {r.get('error')}")
    if r["worker"] != ("cold" if cold else "warm"):
        raise SystemExit(f"asked for a {'cold' if cold else 'warm'} run, got {r['worker']}")
    steps_s = r["timings_s"]["steps"]
    return {"wall": r["wall_s"], "steps": steps_s, "overhead": r["wall_s"] - steps_s}


def command(args: list[str], cold: bool = False, keep: str | None = None) -> tuple[float, int]:
    """Wall time and exit code of one fp8doctor command; `keep`: a file for its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "FP8DOCTOR_COLD"}
    t = time.perf_counter()
    with open(keep or os.devnull, "w", encoding="utf-8") as out:
        p = subprocess.run(args + (["--cold"] if cold else []), stdout=out, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t, p.returncode


def native_agreement(matrix_json: str) -> str:
    """How the Accelerator cells compared with their native cells in one matrix (ok = bit-identical losses)."""
    try:
        with open(matrix_json, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return "unreadable"
    levels: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            if obj.get("check") == "native_agreement" and obj.get("level") not in (None, "skip"):
                levels.append(f"{obj['level']} ({obj.get('detail', '')})")
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(data)
    return "; ".join(levels) or "no comparable cell"


def seconds_per_entry(jsonl: str) -> dict[str, float]:
    """Sum of the cells' wall times per entry path in one matrix's results file (cells that ran)."""
    out: dict[str, float] = {}
    try:
        with open(jsonl, encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError):
        return out
    for rec in records:
        result = rec.get("result") or {}
        if result.get("outcome") != "skipped" and result.get("wall_s") is not None:
            entry = (result.get("spec") or {}).get("entry", "?")
            out[entry] = out.get(entry, 0.0) + float(result["wall_s"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="single runs of each kind (default 3)")
    ap.add_argument("--steps", type=int, default=4, help="training steps per run (default 4)")
    ap.add_argument("--skip-matrix", action="store_true")
    ap.add_argument("--skip-repro", action="store_true")
    ap.add_argument("--skip-report", action="store_true")
    ap.add_argument("--matrix-workers", default="2", help="matrix --workers values to time, e.g. 1,2 (default 2)")
    ap.add_argument("--keep", metavar="DIR", help="keep the matrices' results files (JSON lines and JSON) in DIR")
    args = ap.parse_args(argv)
    fp8 = [sys.executable, "-m", "fp8doctor"]
    rows: list[tuple[str, ...]] = []

    load_from = [os.getloadavg()[0]]

    def row(*cells: str) -> None:
        now = os.getloadavg()[0]
        cells = (*cells, f"{load_from[0]:.1f}-{now:.1f}")
        load_from[0] = now
        rows.append(cells)  # type: ignore[arg-type]
        print(" | ".join(cells), file=sys.stderr, flush=True)  # progress: a crash later loses nothing measured

    # 1. per-run overhead; the first warm run starts the server and is reported on its own line.
    t = time.perf_counter()
    first = one_run(False, args.steps)
    first_total = time.perf_counter() - t  # the server's start is outside the run's own clock
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    for _ in range(max(1, args.repeat)):
        runs["cold"].append(one_run(True, args.steps))
        runs["warm"].append(one_run(False, args.steps))
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("wall", "steps", "overhead")} for k, v in runs.items()}
    ratio = med["warm"]["overhead"] / med["cold"]["overhead"]
    row("one run: wall minus steps (s)", f"{med['cold']['overhead']:.2f}", f"{med['warm']['overhead']:.2f}",
        f"{ratio:.2f}", "warm/cold <= 0.25")
    row("one run: steps alone (s)", f"{med['cold']['steps']:.2f}", f"{med['warm']['steps']:.2f}",
        f"{med['warm']['steps'] / med['cold']['steps']:.2f}", "")
    row("first warm run incl. starting the server (s)", "", f"{first_total - first['steps']:.2f}", "", "once")

    with tempfile.TemporaryDirectory(prefix="fp8doctor-bench-") as tmp:
        tmp = args.keep or tmp
        os.makedirs(tmp, exist_ok=True)
        if not args.skip_matrix:
            walls: dict[tuple[int, bool], float] = {}
            counts = [int(w) for w in args.matrix_workers.split(",")]
            for workers in counts:
                for cold in (True, False):
                    out = os.path.join(tmp, f"m{workers}{cold}.jsonl")
                    wall, _rc = command([*fp8, "matrix", "--steps", str(args.steps), "--workers", str(workers),
                                         "--out", out, "--format", "json"], cold, keep=f"{out}.json")
                    walls[(workers, cold)] = wall
                c, w = walls[(workers, True)], walls[(workers, False)]
                row(f"CPU matrix --workers {workers} (s)", f"{c:.1f}", f"{w:.1f}", f"{w / c:.2f}",
                    "warm <= 45 s, <= 0.5" if workers == 2 else "")
            last = counts[-1]
            agreement = {cold: native_agreement(os.path.join(tmp, f"m{last}{cold}.jsonl.json"))
                         for cold in (True, False)}
            spent = {cold: seconds_per_entry(os.path.join(tmp, f"m{last}{cold}.jsonl")) for cold in (True, False)}
            if {1, 2} <= set(counts):
                row("matrix speed-up --workers 2 vs 1", f"{walls[(1, True)] / walls[(2, True)]:.2f}x",
                    f"{walls[(1, False)] / walls[(2, False)]:.2f}x", "", ">= 1.7x")
        if not args.skip_repro:
            c, _ = command([*fp8, "repro", "--format", "json"], True)
            w, _ = command([*fp8, "repro", "--format", "json"], False)
            row("fp8doctor repro (s)", f"{c:.1f}", f"{w:.1f}", f"{w / c:.2f}", "warm <= 15 s, <= 0.5")
        if not args.skip_report:
            c, _ = command([*fp8, "report", "--quick", "--out-dir", os.path.join(tmp, "report-cold")], True)
            w, _ = command([*fp8, "report", "--quick", "--out-dir", os.path.join(tmp, "report-warm")], False)
            row("fp8doctor report --quick (s)", f"{c:.1f}", f"{w:.1f}", f"{w / c:.2f}", "")
    env_s, _ = command([*fp8, "env"])
    acc_s, _ = command([sys.executable, "-m", "accelerate.commands.accelerate_cli", "env"])
    row("fp8doctor env vs accelerate env (s)", f"{acc_s:.2f}", f"{env_s:.2f}", f"{env_s / acc_s:.2f}", "<= 0.3")

    print(f"warm workers vs fresh interpreters: {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min) at the end, "
          f"{args.steps} steps, "
          f"median of {max(1, args.repeat)} single runs\n")
    print(tabulate(rows, headers=("measure", "cold", "warm", "warm/cold", "target", "load avg"), tablefmt="github"))
    if not args.skip_matrix:
        entries = sorted(set(spent[True]) | set(spent[False]), key=lambda e: -spent[True].get(e, 0.0))
        print(f"\nsum of the cells' wall times per entry, --workers {last} matrices:\n")
        print(tabulate([(e, f"{spent[True].get(e, 0.0):.1f}", f"{spent[False].get(e, 0.0):.1f}") for e in entries],
                       headers=("entry", "cold s", "warm s"), tablefmt="github"))
        for cold, text in agreement.items():
            print(f"\nnative_agreement in the --workers {last} {'cold' if cold else 'warm'} matrix: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
