"""Time `fp8doctor env` against `accelerate env`, `transformers env` and `python -m torch.utils.collect_env`.

Each command runs --repeat times in turn (interleaved, so machine load hits all alike); the table gives the
median and best wall time and each one's ratio to fp8doctor. Target: fp8doctor at most half of `accelerate env`.

    python benchmarks/env_speed.py [--repeat 3] [--check]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from tabulate import tabulate


def commands() -> dict[str, list[str]]:
    py = sys.executable
    cmds = {"fp8doctor env": [py, "-m", "fp8doctor", "env"]}
    accelerate = shutil.which("accelerate")
    cmds["accelerate env"] = [accelerate, "env"] if accelerate else [py, "-m", "accelerate.commands.accelerate_cli",
                                                                      "env"]
    transformers = shutil.which("transformers")
    if transformers:
        cmds["transformers env"] = [transformers, "env"]
    cmds["python -m torch.utils.collect_env"] = [py, "-m", "torch.utils.collect_env"]
    return cmds


def time_once(cmd: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                          timeout=600, check=False)
    return time.perf_counter() - t0, proc.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per command (default 3)")
    ap.add_argument("--check", action="store_true", help="exit 1 when fp8doctor env is not at most half of "
                                                         "accelerate env's median wall time")
    args = ap.parse_args(argv)
    cmds = commands()
    times: dict[str, list[float]] = {name: [] for name in cmds}
    codes: dict[str, set[int]] = {name: set() for name in cmds}
    for _ in range(max(1, args.repeat)):
        for name, cmd in cmds.items():
            seconds, rc = time_once(cmd)
            times[name].append(seconds)
            codes[name].add(rc)
    ours = statistics.median(times["fp8doctor env"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        exits = ",".join(map(str, sorted(codes[name])))
        rows.append((name, f"{med:.2f}", f"{min(ts):.2f}", f"{med / ours:.1f}x", exits))
    print(tabulate(rows, headers=("command", "median s", "best s", "vs fp8doctor", "exit"), tablefmt="github"))
    ratio = ours / statistics.median(times["accelerate env"])
    verdict = "met" if ratio <= 0.5 else "MISSED"
    print(f"\nfp8doctor env / accelerate env = {ratio:.2f} (target <= 0.50: {verdict}); "
          f"{args.repeat} run(s) each, on {sys.platform} with Python {sys.version.split()[0]}")
    return 1 if args.check and ratio > 0.5 else 0


if __name__ == "__main__":
    sys.exit(main())
