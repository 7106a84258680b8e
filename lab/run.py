"""Build lab cells and run probes inside them: `python lab/run.py [--cells a,b] [--probes x,y]`.

Writes lab/observations/<cell>.json; see lab/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

LAB = Path(__file__).resolve().parent
sys.path.insert(0, str(LAB))

from venvs import Unresolvable, ensure_cell  # noqa: E402

PROBES_DIR = LAB / "probes"
OBSERVATIONS = LAB / "observations"
VERSION_PACKAGES = ("accelerate", "transformers", "torchao", "torch", "huggingface_hub", "numpy", "llamafactory",
                    "peft", "trl", "axolotl")
PROBE_TIMEOUT_S = 1800
CELL_FILES = ("cells.yaml", "cells_lf.yaml", "cells_frontends.yaml", "cells_dist.yaml")
# Probes that run only in cells whose `probes` names them (they need a package the other cells lack).
OPT_IN_PROBES = ("llamafactory", "trl_configs", "peft_fp8", "axolotl_config", "axolotl_optimizer", "distributed")

VERSIONS_SNIPPET = """
import json, sys
from importlib import metadata
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out[name] = None
print(json.dumps({"versions": out, "python": "%d.%d.%d" % sys.version_info[:3]}))
"""


def load_cells() -> list[dict]:
    return [cell for name in CELL_FILES if (LAB / name).exists() for cell in yaml.safe_load((LAB / name).read_text())]


def cell_probes(cell: dict, probes: list[str]) -> list[str]:
    named = cell.get("probes")
    return [p for p in probes if p in named] if named else [p for p in probes if p not in OPT_IN_PROBES]


def all_probes() -> list[str]:
    return sorted(p.stem for p in PROBES_DIR.glob("*.py") if not p.stem.startswith("_"))


def probe_env() -> dict:
    """A neutral environment for a probe: no ACCELERATE_*/FP8_*/HF_* leaking in from the caller, no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8_", "HF_", "PYTHON"))}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
                "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"})
    return env


def run_probe(python: Path, probe: str, timeout: float = PROBE_TIMEOUT_S, only: str | None = None) -> list[dict]:
    env = probe_env()
    if only:
        env["LAB_ONLY_INPUTS"] = only
    try:
        proc = subprocess.run([str(python), str(PROBES_DIR / f"{probe}.py")], capture_output=True, text=True,
                              env=env, cwd=str(LAB.parent), timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"outcome": "probe-timeout", "timeout_s": timeout}]
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])["cases"]
    except (IndexError, ValueError, KeyError):
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-5:]
        return [{"outcome": "probe-crashed", "returncode": proc.returncode, "stderr_tail": tail}]


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """The recorded cases with those re-observed replaced in place (same inputs) and the new ones appended."""
    fresh = {json.dumps(case.get("inputs"), sort_keys=True): case for case in new}
    out = [fresh.pop(json.dumps(case.get("inputs"), sort_keys=True), case) for case in old]
    return out + list(fresh.values())


def observe_cell(cell: dict, probes: list[str], only: str | None = None) -> dict:
    path = OBSERVATIONS / f"{cell['name']}.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    record["cell"] = cell["name"]
    record["pip"] = list(cell.get("pip", []))
    record["note"] = cell.get("note", "")
    try:
        python = ensure_cell(cell)
    except Unresolvable as exc:
        record.update({"unresolvable": exc.lines, "versions": {}, "python": None, "probes": {}})
        return record
    record.pop("unresolvable", None)
    facts = json.loads(subprocess.run([str(python), "-c", VERSIONS_SNIPPET, *VERSION_PACKAGES], capture_output=True,
                                      text=True, check=True, env=probe_env()).stdout)
    record["versions"] = facts["versions"]
    record["python"] = facts["python"]
    observed: dict[str, list[dict]] = {}
    for probe in cell_probes(cell, probes):
        start = time.monotonic()
        cases = run_probe(python, probe, cell.get("probe_timeout_s", PROBE_TIMEOUT_S), only)
        ran_ok = not any(c.get("outcome", "").startswith("probe-") for c in cases)
        if only and not cases:
            continue  # no case of this probe matches: its record stays as it was
        if only and not ran_ok:
            print(f"  {cell['name']}: {probe} failed, its record is kept: {cases[0]}", file=sys.stderr, flush=True)
            continue
        observed[probe] = merge(_recorded(path).get(probe, []), cases) if only else cases
        print(f"  {cell['name']}: {probe} {len(observed[probe])} cases in {time.monotonic() - start:.0f}s",
              file=sys.stderr, flush=True)
    # read again: another lab/run.py may have written other probes of this cell meanwhile
    record["probes"] = dict(sorted({**_recorded(path), **observed}.items()))
    return record


def _recorded(path: Path) -> dict[str, list[dict]]:
    """The probes recorded in a cell's file now (empty when there is none)."""
    return json.loads(path.read_text()).get("probes", {}) if path.exists() else {}


def write(record: dict) -> None:
    OBSERVATIONS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    (OBSERVATIONS / f"{record['cell']}.json").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", help="comma-separated cell names (default: all in cells.yaml)")
    parser.add_argument("--probes", help="comma-separated probe names (default: all in lab/probes)")
    parser.add_argument("--only-inputs", metavar="JSON",
                        help='re-observe only the cases whose inputs match, e.g. \'{"env": {"ACCELERATE_FP8_BACKEND": '
                             '["TE"]}}\', merged into the record (the other recorded cases are kept)')
    args = parser.parse_args(argv)
    cells = load_cells()
    known = {c["name"] for c in cells}
    wanted = args.cells.split(",") if args.cells else [c["name"] for c in cells]
    probes = args.probes.split(",") if args.probes else None
    try:
        if args.only_inputs is not None and not isinstance(json.loads(args.only_inputs), dict):
            raise ValueError("not an object")
    except ValueError as exc:
        print(f"lab/run.py: --only-inputs is not a JSON object: {exc}", file=sys.stderr)
        return 2
    unknown = [n for n in wanted if n not in known] + [p for p in probes or [] if p not in all_probes()]
    if unknown:
        print(f"lab/run.py: unknown cell or probe: {', '.join(unknown)}", file=sys.stderr)
        return 2
    for cell in cells:
        if cell["name"] not in wanted:
            continue
        start = time.monotonic()
        print(f"{cell['name']}: building", file=sys.stderr, flush=True)
        # a cell's `probes` (optional) limits it to the probes whose outcome depends on what it varies
        cell_probes = [p for p in (probes or all_probes()) if p in cell.get("probes", all_probes())]
        record = observe_cell(cell, cell_probes, args.only_inputs)
        write(record)
        state = "unresolvable" if record.get("unresolvable") else "done"
        print(f"{cell['name']}: {state} in {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
