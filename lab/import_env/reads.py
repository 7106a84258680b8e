"""Which environment variables each heavy library reads while it is imported (observation for the warm workers).

    python lab/import_env/reads.py [--out lab/observations/import_env/reads.json]

Each module is imported in a fresh interpreter whose `os.environ` records every key looked up (get, [], in,
os.getenv) before the import starts. Reads made from C/C++ through getenv(3) (libgomp's OMP_NUM_THREADS, some of
torch's own C++ switches) are not seen by this probe; they are listed by hand in docs/architecture.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MODULES = ["torch", "transformers", "transformers.models.llama.modeling_llama", "accelerate", "torchao.float8",
           "tempfile"]

PROBE = r"""
import json, os, sys
seen = []
class Recording(type(os.environ)):
    def __getitem__(self, key):
        seen.append(key)
        return super().__getitem__(key)
    def __contains__(self, key):
        seen.append(key)
        return super().__contains__(key)
    def get(self, key, default=None):
        seen.append(key)
        return super().get(key, default)
os.environ.__class__ = Recording
before = set(sys.modules)
__import__(sys.argv[1])
if sys.argv[1] == "tempfile":
    import tempfile; tempfile.gettempdir()
print(json.dumps({"reads": sorted(set(seen)), "modules_loaded": len(set(sys.modules) - before)}))
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
