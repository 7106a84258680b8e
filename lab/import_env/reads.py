"""Which environment variables each heavy library reads while it is imported (observation for the warm workers).

    python lab/import_env/reads.py [--out lab/observations/import_env/reads.json]

Each module is imported in a fresh interpreter through the warm server's own recorder
(`fp8doctor.runs.zygote.preload`): every key looked up by name in `os.environ` (get, [], in, os.getenv); a scan of
the whole environment (items(): tqdm's TQDM_* settings) is not a lookup and is not counted. Reads made from C/C++
through getenv(3) (libgomp's OMP_NUM_THREADS, some of torch's own C++ switches) are not seen by this probe; they are
listed by hand in docs/architecture.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from fp8doctor.runs.zygote import PRELOAD

MODULES = list(PRELOAD)  # what the warm server imports, each observed alone

PROBE = r"""
import json, sys
from fp8doctor.runs.zygote import preload
loaded, reads = preload((sys.argv[1],))
print(json.dumps({"reads": reads, "imported": bool(loaded)}))
"""


def observe(module: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for dist in ("torch", "transformers", "accelerate", "torchao", "huggingface_hub"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="lab/observations/import_env/reads.json")
    args = ap.parse_args()
    data = {"python": sys.version.split()[0], "versions": versions(),
            "imports": {m: observe(m) for m in MODULES}}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")
    for m, o in data["imports"].items():
        print(f"{m}: {len(o['reads'])} variables: {' '.join(o['reads'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
