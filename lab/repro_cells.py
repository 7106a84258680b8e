"""Run `fp8doctor repro` against every lab cell and record its rows: `python lab/repro_cells.py [--cells a,b]`.

Each cell is diagnosed from outside, as a user with the doctor in its own environment would (`fp8doctor repro
--python CELL`): nothing is installed into the cell; the runs import fp8doctor through a folder on their PYTHONPATH
that holds only the package. Writes lab/observations/repro/<cell>.json (atomically): the cell's versions as the
doctor read them, the machine facts the expectations depend on, and per row the RunSpec, the engine's expected
verdicts, the verdict reached, whether it was UNEXPECTED and what the library did. No host path, no timestamp.
Cells run one after another (a progress line each on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LAB = Path(__file__).resolve().parent
ROOT = LAB.parent
sys.path.insert(0, str(LAB))
sys.path.insert(0, str(ROOT))

from run import VERSIONS_SNIPPET, load_cells, probe_env  # noqa: E402
from venvs import Unresolvable, ensure_cell  # noqa: E402

from fp8doctor.system.safeio import open_write  # noqa: E402

OUT_DIR = LAB / "observations" / "repro"
REPRO_TIMEOUT_S = 1200
MESSAGE_CHARS = 200
SHIMS_DIR = LAB / "probes" / "lf_site"  # lab_cpu_shims: the CUDA-only torchvision/torchaudio wheels, neutralised
CUDA_ONLY_WHEELS = ("torchvision", "torchaudio")
ABSOLUTE_DIRS = re.compile(r"(?<![\w.])(?:/[\w.+-]+)+/")  # a path's folders (the file name is kept)

FACTS_SNIPPET = """
import json, sys
from fp8doctor.system import target
target.select(sys.argv[1])
from fp8doctor.runs.machine import default_device, snapshot
facts = snapshot()
print(json.dumps({"versions": target.package_versions(), "python": target.snapshot()["python"],
                  "machine": {"gpu_count": int(facts.get("gpu_count") or 0), "cc": facts.get("cc")},
                  "device": default_device(facts)}))
"""


def scrub(text: str, limit: int | None = MESSAGE_CHARS) -> str:
    """One line of a library message without the folders of any absolute path or the launcher's output tail."""
    line = " ".join(str(text).split("; output tail:")[0].split())
    return ABSOLUTE_DIRS.sub("…/", line)[:limit]


def observed(result: dict[str, Any]) -> dict[str, Any]:
    """What the library did in one run, as the table and a reader need it."""
    out: dict[str, Any] = {"outcome": result.get("outcome")}
    err = result.get("error")
    if isinstance(err, dict):
        out["error"] = {"type": err.get("type"), "where": scrub(err.get("where") or ""),
                        "message": scrub(err.get("message") or "")}
    if result.get("skip_reason"):
        out["skip_reason"] = scrub(result["skip_reason"])
    acc = result.get("accelerator") or {}
    if acc:
        out["mixed_precision"] = acc.get("mixed_precision")
    out["fp8_layers"] = len(result.get("fp8_layers") or [])
    return out


def row_record(row: dict[str, Any]) -> dict[str, Any]:
    result = row.get("result") or {}
    expected = list(row.get("expected") or [])
    return {"id": row["id"], "label": row["label"], "kind": row["kind"], "spec": result.get("spec"),
            "expected": expected, "verdict": row["verdict"],
            "unexpected": bool(expected) and row["verdict"] not in expected, "observed": observed(result)}


def _fp8doctor(args: list[str], timeout: float, shims: bool) -> subprocess.CompletedProcess[str]:
    env = probe_env()
    if shims:  # as the LLaMA-Factory probe does: on this CPU machine these wheels break `import transformers` models
        env.update({"PYTHONPATH": str(SHIMS_DIR), "LAB_CPU_SHIMS": "1"})
    return subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True,
                          env=env, cwd=str(ROOT), timeout=timeout)


def cuda_only_wheels(python: Path) -> list[str]:
    """The CUDA-only wheels (torchvision, torchaudio) installed in the cell (a LLaMA-Factory or axolotl cell)."""
    out = subprocess.run([str(python), "-c", VERSIONS_SNIPPET, *CUDA_ONLY_WHEELS], capture_output=True, text=True,
                         env=probe_env(), check=True, timeout=300)
    return sorted(k for k, v in json.loads(out.stdout.strip().splitlines()[-1])["versions"].items() if v)


def observe_cell(cell: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"cell": cell["name"], "pip": list(cell.get("pip", [])), "note": cell.get("note", "")}
    try:
        python = ensure_cell(cell)
    except Unresolvable as exc:
        return {**record, "unresolvable": exc.lines, "rows": [], "unexpected": 0}
    facts = subprocess.run([sys.executable, "-c", FACTS_SNIPPET, str(python)], capture_output=True, text=True,
                           env=probe_env(), cwd=str(ROOT), check=True, timeout=300)
    record.update(json.loads(facts.stdout.strip().splitlines()[-1]))
    shims = cuda_only_wheels(python)
    if shims:
        record["cpu_shims"] = (f"{', '.join(shims)} (CUDA builds that cannot load against torch+cpu) neutralised in "
                               "the runs by lab/probes/lf_site/lab_cpu_shims.py, as the LLaMA-Factory probe does")
    proc = _fp8doctor(["repro", "--python", str(python), "--format", "json"], REPRO_TIMEOUT_S, bool(shims))
    if proc.returncode not in (0, 1):
        tail = [scrub(ln) for ln in proc.stderr.splitlines() if ln.strip()][-3:]
        return {**record, "error": {"exit_code": proc.returncode, "stderr_tail": tail}, "rows": [], "unexpected": 0}
    data = json.loads(proc.stdout)
    rows = [row_record(r) for r in data["rows"]]
    record.update({"backend": data["backend"], "recipe": data["recipe"], "exit_code": data["exit_code"],
                   "notes": [scrub(n, None) for n in data.get("notes") or []], "rows": rows,
                   "unexpected": sum(r["unexpected"] for r in rows)})
    return record


def write(record: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{record['cell']}.json"
    with open_write(path, "a repro observation") as fh:
        fh.write(json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", help="comma-separated cell names (default: every cell of lab/cells*.yaml)")
    args = parser.parse_args(argv)
    cells = load_cells()
    wanted = args.cells.split(",") if args.cells else [c["name"] for c in cells]
    unknown = sorted(set(wanted) - {c["name"] for c in cells})
    if unknown:
        print(f"lab/repro_cells.py: unknown cell: {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = [c for c in cells if c["name"] in wanted]
    total_rows = total_unexpected = 0
    start = time.monotonic()
    for k, cell in enumerate(chosen, 1):
        t0 = time.monotonic()
        try:
            record = observe_cell(cell)
        except subprocess.TimeoutExpired as exc:
            record = {"cell": cell["name"], "pip": list(cell.get("pip", [])), "note": cell.get("note", ""),
                      "error": {"timeout_s": exc.timeout}, "rows": [], "unexpected": 0}
        write(record)
        total_rows += len(record["rows"])
        total_unexpected += record["unexpected"]
        state = ("unresolvable" if record.get("unresolvable") else f"error {record['error']}" if record.get("error")
                 else f"{len(record['rows'])} rows, {record['unexpected']} UNEXPECTED")
        print(f"[{k}/{len(chosen)}] {cell['name']}: {state} ({time.monotonic() - t0:.0f}s, "
              f"{time.monotonic() - start:.0f}s in all)", file=sys.stderr, flush=True)
    print(f"{len(chosen)} cells, {total_rows} rows, {total_unexpected} UNEXPECTED", file=sys.stderr)
    return 1 if total_unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
