"""`fp8doctor watch --merge DIR` time against the number of rank files: it must grow linearly.

Builds DIR with N rank files (8 ranks per host folder, each a process record with four ACCELERATE_* variables and
an Accelerator record, like the observer's), then times the whole merge (`fp8doctor.watch.merge.merge`: safe
reads, checks, judging, differences) and the text rendering, best of --repeat. Issue 20's bound: 20,000 rank
files in at most 10 s.

    python benchmarks/merge_speed.py [--ranks 2000 20000] [--repeat 1] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from fp8doctor.watch.merge import merge
from fp8doctor.watch.render_job import render_job

BOUND_S = 10.0  # for 20,000 rank files


def build(root: Path, ranks: int) -> None:
    env = {"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": "AO", "ACCELERATE_USE_CPU": "true",
           "ACCELERATE_DYNAMO_BACKEND": "NO"}
    for rank in range(ranks):
        host = root / f"node-{rank // 8}"
        host.mkdir(exist_ok=True)
        pid = 1000 + rank
        process = {"kind": "process", "pid": pid, "ppid": 1, "argv": ["train.py"], "host": host.name,
                   "watch_id": f"w{rank // 8}", "rank_env": {"RANK": str(rank), "WORLD_SIZE": str(ranks),
                                                            "GROUP_RANK": str(rank // 8)},
                   "env_at_start": {}, "accelerate_env": env}
        acc = {"kind": "accelerator", "id": 0, "arg_mixed_precision": "fp8", "handlers": [], "fp8_handlers": [],
               "env": {}, "result": {"mixed_precision": "bf16" if rank == 5 else "fp8", "fp8_enabled": rank != 5}}
        (host / f"{rank}-{pid}.jsonl").write_text(json.dumps(process) + "\n" + json.dumps(acc) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--check", action="store_true", help=f"exit 1 if 20,000 ranks take over {BOUND_S:g} s")
    args = ap.parse_args()
    rows, worst = [], 0.0
    for n in args.ranks:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp), n)
            best = cpu = float("inf")
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                job = merge(tmp)
                render_job(job, "text")
                best = min(best, time.perf_counter() - t0)
                cpu = min(cpu, time.process_time() - c0)
            rows.append([n, f"{best:.2f}", f"{cpu:.2f}", f"{1000 * best / n:.3f}", job["verdict"], len(job["ranks"])])
            if n >= 20000:
                worst = max(worst, best)
    print(tabulate(rows, headers=["rank files", "merge + render s", "CPU s", "ms per rank", "verdict", "ranks"]))
    return 1 if args.check and worst > BOUND_S else 0


if __name__ == "__main__":
    sys.exit(main())
