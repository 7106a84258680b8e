"""`fp8doctor repro` as recorded in every lab cell (lab/observations/repro/*.json, written by lab/repro_cells.py):
no row was UNEXPECTED, and the engine, asked again now on the recorded versions and machine facts, still expects
what it expected then (a change to knowledge/ that moves a repro expectation fails here until the cell is re-run)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from fp8doctor.repro.expect import stack_of
from fp8doctor.repro.plan import expectation
from fp8doctor.runs.machine import skip_reason
from fp8doctor.runs.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((ROOT / "lab" / "observations" / "repro").glob("*.json"))
CELLS = {c["name"]: c for name in sorted((ROOT / "lab").glob("cells*.yaml")) for c in yaml.safe_load(name.read_text())}
MACHINE_PATH = re.compile(r"(/root/|/home/|/tmp/|/work/|/usr/|/opt/|site-packages/|\.cache/)")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_every_cell_has_a_repro_record() -> None:
    recorded = {p.stem for p in RECORDS}
    assert recorded == set(CELLS), f"missing: {sorted(set(CELLS) - recorded)}, stale: {sorted(recorded - set(CELLS))}"


@pytest.mark.parametrize("path", RECORDS, ids=_ids(RECORDS))
def test_no_row_is_unexpected(path: Path) -> None:
    record = _load(path)
    assert record["pip"] == CELLS[record["cell"]]["pip"], "record is stale: the cell's pins changed"
    assert "error" not in record, record.get("error")
    if record.get("unresolvable"):
        return
    assert len(record["rows"]) >= 7
    wrong = [(r["id"], r["expected"], r["verdict"]) for r in record["rows"]
             if r["expected"] and r["verdict"] not in r["expected"]]
    assert wrong == [], f"{record['cell']}: repro rows the engine did not predict"
    assert record["unexpected"] == sum(r["unexpected"] for r in record["rows"]) == 0


@pytest.mark.parametrize("path", RECORDS, ids=_ids(RECORDS))
def test_engine_still_expects_what_was_recorded(path: Path) -> None:
    record = _load(path)
    if record.get("unresolvable"):
        return
    versions, machine = record["versions"], record["machine"]
    stack = stack_of(versions, cuda_build=bool(machine["gpu_count"]))
    facts = {"installed": versions, "cc": machine["cc"], "gpu_count": machine["gpu_count"], "te_import_error": None}
    for row in record["rows"]:
        spec = RunSpec.from_dict(row["spec"])
        spec = spec if spec.device else replace(spec, device=record["device"])
        now = expectation(spec, stack, lambda s: skip_reason(s, facts))
        assert list(now) == row["expected"], f"{record['cell']} {row['id']}: the engine now expects {now}"


@pytest.mark.parametrize("path", RECORDS, ids=_ids(RECORDS))
def test_record_holds_no_host_path(path: Path) -> None:
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text)
