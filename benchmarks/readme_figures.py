"""The README's quick-start figures from one real run of this commit: `fp8doctor report` (and `--quick`) timed,
with the machine and its load named, the verdict, exit code and first-screen length, and the Markdown excerpt the
README quotes (the report down to its first `###` after the table plus the reference bug's section).

    python benchmarks/readme_figures.py [--variant default --variant quick] [--out-dir DIR]

Every number it prints comes from the run it made; paste them together (same commit, same machine, same load).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"default": [], "quick": ["--quick"], "full": ["--full"]}


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores{f' ({model})' if model else ''}"


def commit() -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True,
                           check=False).stdout.strip()
    return proc.stdout.strip() + (" (uncommitted changes)" if dirty else "")


def run(variant: str, out_dir: Path) -> dict[str, object]:
    load_before = os.getloadavg()
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "fp8doctor", "report", "--out-dir", str(out_dir),
                           *VARIANTS[variant]], capture_output=True, text=True, timeout=3600, check=False)
    wall = time.monotonic() - t0
    load_after = os.getloadavg()
    md_files = sorted(out_dir.glob("*.md"))
    md = md_files[-1].read_text() if md_files else ""
    data = json.loads(sorted(out_dir.glob("*.json"))[-1].read_text()) if md_files else {}
    first = md[:md.index("<details>")] if "<details>" in md else md
    return {"variant": variant, "exit_code": proc.returncode, "wall_s": round(wall, 1),
            "load_1min_before_after": [round(load_before[0], 1), round(load_after[0], 1)],
            "verdict": data.get("verdict"), "first_screen_lines": len(first.splitlines()),
            "parts_s": {p["name"]: p["seconds"] for p in data.get("parts", [])}, "first_screen": first}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="default: default and quick")
    ap.add_argument("--out-dir", type=Path, help="keep the reports here (default: a temporary folder)")
    ap.add_argument("--excerpt", action="store_true", help="also print each run's first screen")
    args = ap.parse_args(argv)
    base = args.out_dir or Path(tempfile.mkdtemp(prefix="fp8doctor-readme-"))
    print(f"commit {commit()}; {machine()}; Python {platform.python_version()}")
    for variant in args.variant or ["default", "quick"]:
        result = run(variant, base / variant)
        first = result.pop("first_screen")
        print(json.dumps(result))
        if args.excerpt:
            print(first)
    return 0


if __name__ == "__main__":
    sys.exit(main())
