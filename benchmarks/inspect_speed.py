"""`fp8doctor inspect --model` on a 7B-shaped Llama config: wall and CPU time, peak memory, and how much of it is
importing torch + transformers (the floor) rather than building the model on meta and judging its layers.

    python benchmarks/inspect_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

LLAMA_7B = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
            "intermediate_size": 11000, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": 32000}
IMPORTS = "import torch, transformers; from transformers.models.llama import modeling_llama"
INSIDE = ("import json, resource, sys, time\n" + IMPORTS + "\n"
          "from fp8doctor.inspect.command import inspect_model\n"
          "t = time.monotonic(); inspect_model(sys.argv[1], gpu='H100', batch=4, seq_len=2048)\n"
          "print(json.dumps({'build_and_analyze_s': time.monotonic() - t}))\n")


def timed(argv: list[str]) -> tuple[float, float, float, str]:
    """Wall s, CPU s (user+sys of the child), the child's peak RSS in MiB, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, check=True)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024, p.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(LLAMA_7B))
        rows: dict[str, list[tuple[float, float, float]]] = {"imports only": [], "fp8doctor inspect (whole)": [],
                                                             "build on meta + analyze": []}
        for _ in range(args.repeat):  # interleaved, so background load hits every row alike
            rows["imports only"].append(timed([sys.executable, "-c", IMPORTS])[:3])
            w, c, m, _ = timed([sys.executable, "-m", "fp8doctor", "inspect", "--model", str(config), "--gpu",
                                "H100", "--format", "json"])
            rows["fp8doctor inspect (whole)"].append((w, c, m))
            *_, out = timed([sys.executable, "-c", INSIDE, str(config)])
            rows["build on meta + analyze"].append((json.loads(out)["build_and_analyze_s"], float("nan"),
                                                    float("nan")))
    table = [[name, f"{statistics.median(r[0] for r in runs):.2f}", f"{min(r[0] for r in runs):.2f}",
              f"{statistics.median(r[1] for r in runs):.2f}", f"{max(r[2] for r in runs):.0f}"]
             for name, runs in rows.items()]
    print(tabulate(table, ["what", "median wall s", "best wall s", "median CPU s", "peak RSS MiB (max)"],
                   tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
