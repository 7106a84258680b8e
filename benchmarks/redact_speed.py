"""Redaction time against a value's length: it must grow linearly (10x the length, about 10x the time).

Each value shape (plain letters, a URL, many `://`, option-like dashes, assignments, token prefixes, ...) is
redacted at 10^5, 3*10^5 and 10^6 characters, best of --repeat (short values repeated to the same total length).
The table gives the time per size and the ratio of the 10^6 time to the 10^5 time: linear is ~10, quadratic
would be ~100. For contrast, the URL expression fp8doctor used before (`[^\\s/@:]+:[^\\s/@]*@` after a scheme)
is timed on 10^4 and 2*10^4 letters.

    python benchmarks/redact_speed.py [--repeat 3] [--check]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable

from tabulate import tabulate

from fp8doctor.redact import redact

SIZES = (10**5, 3 * 10**5, 10**6)
SHAPES: dict[str, Callable[[int], str]] = {
    "letters": lambda n: "a" * n,
    "one long URL": lambda n: "https://" + "a" * (n - 8),
    "many `://`": lambda n: "a://" * (n // 4),
    "user:pass runs": lambda n: "https://" + "a:" * (n // 2),
    "`.-` runs": lambda n: ".-" * (n // 2),
    "`-----BEGIN ` runs": lambda n: "-----BEGIN " * (n // 11),
    "key block, no END": lambda n: "-----BEGIN RSA PRIVATE KEY-----" + "A" * (n - 31),
    "unclosed quotes": lambda n: "--password '" * (n // 12),
    "NAME= runs": lambda n: "A_TOKEN=" * (n // 8),
    "`sk-` prefixes": lambda n: "sk-" * (n // 3),
    "`eyJ` prefixes": lambda n: "eyJ" * (n // 3),
    "`/@` in a URL": lambda n: "https://" + "/@" * (n // 2),
    "mixed text": lambda n: "x=1 -a https://u@h/ token hf_ " * (n // 30),
}
OLD_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<cred>[^\s/@:]+:[^\s/@]*)@")


def best_of(fn: Callable[[], object], repeat: int, calls: int = 1) -> float:
    """Seconds per call, best of `repeat` timings of `calls` calls each (short calls are repeated, so that every
    size is timed over about the same wall time and load spikes weigh alike)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per size, best kept (default 3)")
    ap.add_argument("--check", action="store_true", help="exit 1 when any 10^6/10^5 ratio is over 25 (linear ~10)")
    args = ap.parse_args(argv)
    rows, worst = [], 0.0
    for name, make in SHAPES.items():
        values = [make(n) for n in SIZES]
        times = [best_of(lambda v=v: redact(v), max(1, args.repeat), calls=max(1, round(SIZES[-1] / len(v))))
                 for v in values]
        ratio = times[-1] / max(times[0], 1e-9)
        worst = max(worst, ratio)
        rows.append((name, *(f"{t * 1000:.1f}" for t in times), f"{ratio:.1f}"))
    print(tabulate(rows, headers=("value shape", "10^5 ms", "3*10^5 ms", "10^6 ms", "10^6 / 10^5"),
                   tablefmt="github"))
    old = [best_of(lambda n=n: OLD_URL.sub("", "a" * n), 1) for n in (10**4, 2 * 10**4)]
    print(f"\nbefore (old URL expression on letters): 10^4 {old[0]:.2f} s, 2*10^4 {old[1]:.2f} s, "
          f"ratio {old[1] / max(old[0], 1e-9):.1f} for 2x the length (quadratic: ~4)")
    verdict = "met" if worst <= 25 else "NOT met"
    print(f"worst 10^6/10^5 ratio {worst:.1f} (linear ~10, target <= 25: {verdict}); Python {sys.version.split()[0]}")
    return 1 if args.check and worst > 25 else 0


if __name__ == "__main__":
    sys.exit(main())
