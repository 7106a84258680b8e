"""Download (once, cached) the pure-Python wheels the static TE lab reads; never installs or imports them.

Cache: $FP8DOCTOR_LAB_CACHE/te (default ~/.cache/fp8doctor-lab/te). `python lab/te/fetch.py` fetches everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from releases import ACCELERATE_RELEASES, TE_RELEASES  # noqa: E402

# The distribution whose wheel holds transformer_engine/pytorch/*.py and transformer_engine/common/recipe/.
TE_DIST = "transformer-engine"


def cache_dir() -> Path:
    root = os.environ.get("FP8DOCTOR_LAB_CACHE") or str(Path.home() / ".cache" / "fp8doctor-lab")
    return Path(root) / "te"


def _wheel_in(folder: Path, stem: str) -> Path | None:
    found = sorted(folder.glob(f"{stem}-*.whl"))
    return found[0] if found else None


def fetch(dist: str, version: str) -> tuple[Path | None, str]:
    """The cached wheel of dist==version, or (None, why there is none)."""
    folder = cache_dir() / dist / version
    stem = dist.replace("-", "_")
    wheel = _wheel_in(folder, stem)
    if wheel:
        return wheel, ""
    missing = folder / "MISSING"
    if missing.exists():
        return None, missing.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--python-version", "3.11",
           "--quiet", "--dest", str(folder), f"{dist}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = _wheel_in(folder, stem)
    if wheel:
        return wheel, ""
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")]
    why = lines[0] if lines else f"pip download exited {proc.returncode} without a wheel"
    if "No matching distribution" in why or "Could not find a version" in why:
        missing.write_text(why + "\n")
    return None, why


def main() -> int:
    for v in TE_RELEASES:
        print(TE_DIST, v, *fetch(TE_DIST, v))
    for v in ACCELERATE_RELEASES:
        print("accelerate", v, *fetch("accelerate", v))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
