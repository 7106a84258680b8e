"""CPU matrix wall time with `--workers 1` against `--workers 2` on one small selection, in one invocation.

    python benchmarks/matrix_workers.py [--repeat 1] [--steps 4]

The selection is torchao tensorwise over the native and Accelerator entry paths (+ their bf16 baselines:
4 cells). Each `fp8doctor matrix` runs as a user would run it; the table gives its wall time and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from tabulate import tabulate

SELECTION = ["--backend", "torchao", "--recipe", "tensorwise", "--entry", "native", "--entry", "accelerator"]


def run_matrix(workers: int, steps: int, tmp: str) -> tuple[float, int, int]:
    out = os.path.join(tmp, f"w{workers}-{time.monotonic_ns()}.jsonl")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fp8doctor", "matrix", *SELECTION, "--steps", str(steps),
                           "--workers", str(workers), "--out", out, "--format", "json"],
                          capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - t0
    cells = 0
    if os.path.exists(out):
        with open(out, encoding="utf-8") as fh:
            cells = sum(1 for line in fh if line.strip())
    try:
        json.loads(proc.stdout)
    except ValueError:
        print(proc.stderr[-2000:], file=sys.stderr)
    return wall, proc.returncode, cells


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="matrices per worker count, interleaved (default 1)")
    ap.add_argument("--steps", type=int, default=4, help="steps per cell (default 4)")
    args = ap.parse_args(argv)
    walls: dict[int, list[float]] = {1: [], 2: []}
    info: dict[int, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="fp8doctor-bench-") as tmp:
        for _ in range(max(1, args.repeat)):
            for workers in (1, 2):
                wall, rc, cells = run_matrix(workers, args.steps, tmp)
                walls[workers].append(wall)
                info[workers] = (rc, cells)
    one = statistics.median(walls[1])
    rows = [(f"--workers {w}", info[w][1], f"{statistics.median(ts):.1f}", f"{one / statistics.median(ts):.2f}x",
             info[w][0]) for w, ts in walls.items()]
    print(f"fp8doctor matrix {' '.join(SELECTION)} --steps {args.steps} on {os.cpu_count()} CPU cores "
          f"(median of {max(1, args.repeat)})\n")
    print(tabulate(rows, headers=("workers", "cells", "wall s", "speed-up", "exit"), tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
