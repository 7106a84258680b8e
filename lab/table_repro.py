"""The `fp8doctor repro` section of docs/generations.md, from lab/observations/repro/*.json (lab/repro_cells.py).
Rendered by lab/table.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

REPRO_DIR = Path(__file__).resolve().parent / "observations" / "repro"
ROW_IDS = ("buggy_append", "buggy_if_missing", "accelerator", "trainer", "launch", "multiproc", "native")

INTRO = """## `fp8doctor repro` on every cell

`python lab/repro_cells.py` runs `fp8doctor repro --python CELL --format json` against each cell (nothing installed
into it) and records every row in `lab/observations/repro/<cell>.json`. An entry is the verdict the run reached;
`UNEXPECTED (expected X)` marks a row whose verdict the engine did not predict (knowledge/, asked through
`fp8doctor/repro/expect.py`). tests/test_repro_observations.py holds the records to zero UNEXPECTED rows and the
engine's current expectations to the recorded ones. A cell without torchao, or with an accelerate that has no
torchao path and no Transformer Engine here, has its fixed rows `not-applicable` (with the reason in the record).
† the cell's CUDA-only torchvision/torchaudio wheels were neutralised in the runs (lab/probes/lf_site/lab_cpu_shims.py,
as the LLaMA-Factory probe does): without that, every row there fails at `import transformers`' models on this CPU.
"""


def _order(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.stem)]


def load() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(REPRO_DIR.glob("*.json"), key=_order)]


def _entry(row: dict | None) -> str:
    if row is None:
        return ""
    if row["unexpected"]:
        return f"{row['verdict']} UNEXPECTED (expected {' or '.join(row['expected'])})"
    return row["verdict"]


def render(records: list[dict], table: Callable[[list[str], list[list[str]]], list[str]]) -> list[str]:
    if not records:
        return []
    body = []
    rows_total = unexpected = failed = 0
    for rec in records:
        versions = rec.get("versions") or {}
        name = rec["cell"] + (" †" if rec.get("cpu_shims") else "")
        base = [name, versions.get("accelerate") or "", versions.get("transformers") or "",
                versions.get("torchao") or "none"]
        if rec.get("unresolvable") or rec.get("error"):
            why = "pip cannot resolve the pins" if rec.get("unresolvable") else "repro did not finish"
            body.append(base + [why] + [""] * len(ROW_IDS) + [""])
            failed += 1
            continue
        by_id = {r["id"]: r for r in rec["rows"]}
        rows_total += len(rec["rows"])
        unexpected += rec["unexpected"]
        body.append(base + [f"{rec['backend']}:{rec['recipe']}"] + [_entry(by_id.get(i)) for i in ROW_IDS]
                    + [str(rec["unexpected"])])
    head = ["cell", "accelerate", "transformers", "torchao", "backend:recipe", *ROW_IDS, "UNEXPECTED"]
    return [INTRO, *table(head, body), "",
            f"{len(records)} cells ({failed} without a run), {rows_total} rows, {unexpected} UNEXPECTED.", ""]
