"""Where the time of one short fp8doctor run goes: process start, imports, model build, prepare, steps.

Two views, measured in one invocation:
1. the run itself (`fp8doctor.runs.pool.run_spec`, torchao tensorwise via the Accelerator, CPU emulation):
   its `timings_s` plus the pool's wall time (what is left is interpreter start + worker bookkeeping);
2. each heavy import alone, in a fresh interpreter (`python -X importtime` is too fine-grained to read), so
   the import share can be pinned on a library.

    python benchmarks/run_cost.py [--repeat 3] [--entry accelerator] [--steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from tabulate import tabulate

# Each snippet runs in a fresh interpreter; the first is the floor every child process pays.
IMPORTS = {
    "python start (no imports)": "pass",
    "import fp8doctor.runs.worker": "import fp8doctor.runs.worker",
    "import torch": "import torch",
    "+ transformers LlamaForCausalLM": "import torch; from transformers import LlamaForCausalLM",
    "+ accelerate Accelerator": "import torch; from accelerate import Accelerator",
    "+ torchao.float8": "import torch; import torchao.float8",
    "all four (what a run imports)": "import torch; from transformers import LlamaForCausalLM; "
                                     "from accelerate import Accelerator; import torchao.float8",
}


EXIT_PROBE = """
import os, sys, time
import torch, torchao.float8
from transformers import LlamaForCausalLM
from accelerate import Accelerator
print(time.time(), flush=True)
if sys.argv[1] == "os._exit":
    os._exit(0)
"""


def time_exit(how: str) -> float:
    """Seconds from the last line of a script that imported the run's libraries to its process being gone."""
    proc = subprocess.Popen([sys.executable, "-c", EXIT_PROBE, how], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    last = float(proc.stdout.readline())
    proc.wait()
    return time.time() - last


def time_snippet(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def run_once(entry: str, steps: int) -> dict[str, float]:
    from fp8doctor.runs.pool import run_spec
    from fp8doctor.runs.spec import RunSpec

    result = run_spec(RunSpec(backend="torchao", recipe="tensorwise", entry=entry, steps=steps,
                              env={"OMP_NUM_THREADS": "1"}))
    if result["outcome"] != "finished":
        raise SystemExit(f"the run did not finish: {result['outcome']} {result.get('error')}")
    t = dict(result["timings_s"])
    t["wall"] = result["wall_s"]
    t["start+bookkeeping"] = result["wall_s"] - t["total"]
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs and import timings per item (default 3)")
    ap.add_argument("--entry", default="accelerator", help="entry path of the timed run (default accelerator)")
    ap.add_argument("--steps", type=int, default=4, help="training steps of the timed run (default 4)")
    args = ap.parse_args(argv)
    runs: list[dict[str, float]] = []
    imports: dict[str, list[float]] = {name: [] for name in IMPORTS}
    exits: dict[str, list[float]] = {"normal exit": [], "os._exit": []}
    for _ in range(max(1, args.repeat)):  # interleaved, so background load hits both views alike
        runs.append(run_once(args.entry, args.steps))
        for name, code in IMPORTS.items():
            imports[name].append(time_snippet(code))
        for how in exits:
            exits[how].append(time_exit(how))

    def med(key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in runs)

    wall = med("wall")
    phases = [("process start + worker bookkeeping", med("start+bookkeeping")),
              ("imports (torch; torchao for CPU emulation)", med("imports")),
              ("model build (+ transformers import)", med("model_build")),
              ("prepare (+ accelerate/torchao conversion)", med("prepare")), ("steps", med("steps"))]
    rest = wall - sum(s for _, s in phases)
    phases.append(("other (observers, result)", max(0.0, rest)))
    print(f"One run: torchao tensorwise via {args.entry}, {args.steps} steps, tiny model, CPU "
          f"(median of {len(runs)}; wall {wall:.2f} s)\n")
    print(tabulate([(n, f"{s:.2f}", f"{100 * s / wall:.0f}%") for n, s in phases],
                   headers=("phase", "median s", "share"), tablefmt="github"))
    floor = statistics.median(imports["python start (no imports)"])
    print("\nEach import alone in a fresh interpreter (includes the interpreter start):\n")
    print(tabulate([(n, f"{statistics.median(ts):.2f}", f"{statistics.median(ts) - floor:.2f}")
                    for n, ts in imports.items()], headers=("snippet", "median s", "minus start"), tablefmt="github"))
    print("\nInterpreter exit after those imports (part of the first phase above):\n")
    print(tabulate([(how, f"{statistics.median(ts):.2f}") for how, ts in exits.items()],
                   headers=("how the process ends", "median s"), tablefmt="github"))
    top = max(phases, key=lambda p: p[1])
    print(f"\ndominant phase: {top[0]} ({100 * top[1] / wall:.0f}% of the run); steps are "
          f"{100 * med('steps') / wall:.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
