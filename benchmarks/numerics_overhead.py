"""Step time of a torchao FP8 (emulated, CPU) training loop with and without `watch --numerics`' sampler attached
(fp8doctor.numerics.NumericsSampler, each FP8 layer sampled once every K of its forward calls), and with the sampler
plus the gradient norm taken before every optimizer step (fp8doctor.numerics.grad_norm: what `matrix` and `watch
--numerics/--baseline` add). The goal of issue 23: at most 1.25x the step time with the default K.

    python benchmarks/numerics_overhead.py [--steps 40] [--every 20] [--size small] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from tabulate import tabulate

from fp8doctor.knowledge.numerics import DEFAULT_EVERY
from fp8doctor.numerics import NumericsSampler, grad_norm
from fp8doctor.runs.model import build_model, synthetic_batches


def timed_loop(size: str, steps: int, every: int | None, norms: bool = False) -> float:
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    model = build_model(size, seed=0)
    convert_to_float8_training(model, config=Float8LinearConfig(emulate=True))
    sampler = NumericsSampler(every).attach(model) if every else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = synthetic_batches(size, seed=0, steps=steps + 2)
    for i, batch in enumerate(batches):
        if i == 2:  # two warm-up steps
            t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        if norms:
            grad_norm(model.parameters())
        optimizer.step()
        optimizer.zero_grad()
    seconds = (time.perf_counter() - t0) / steps
    if sampler:
        sampler.detach()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=DEFAULT_EVERY)
    parser.add_argument("--size", default="small")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    plain, sampled, normed, every1 = [], [], [], []
    for _ in range(args.repeat):  # interleaved: background load hits every variant alike
        plain.append(timed_loop(args.size, args.steps, None))
        sampled.append(timed_loop(args.size, args.steps, args.every))
        normed.append(timed_loop(args.size, args.steps, args.every, norms=True))
        every1.append(timed_loop(args.size, args.steps, 1))
    base = statistics.median(plain)
    label = f"--numerics-every {args.every}" + (" (default)" if args.every == DEFAULT_EVERY else "")
    rows = [[name, f"{1e3 * statistics.median(v):.1f}", f"{statistics.median(v) / base:.3f}x"]
            for name, v in (("no sampler", plain), (label, sampled), (label + " + grad norm each step", normed),
                            ("--numerics-every 1 (every call)", every1))]
    print(tabulate(rows, ["variant", "median ms/step", "vs no sampler"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
