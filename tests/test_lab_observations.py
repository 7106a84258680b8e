"""The generation lab's records are well-formed and deterministic (the doctor's predictions are tested elsewhere)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OBSERVATIONS = sorted((ROOT / "lab" / "observations").glob("*.json"))
CELLS = {c["name"]: c for name in ("cells.yaml", "cells_lf.yaml", "cells_frontends.yaml", "cells_dist.yaml")
         for c in yaml.safe_load((ROOT / "lab" / name).read_text())}
MACHINE_PATH = re.compile(r"(/root/|/home/|/tmp/|/work/|/usr/|/opt/|site-packages/|\.cache/)")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}|\b\d{2}:\d{2}:\d{2}\b")
OUTCOMES = {"ok", "raised", "absent", "crashed", "launched", "rejected", "timeout", "probe-crashed",
            "probe-timeout", "hung"}


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_there_are_observations() -> None:
    assert OBSERVATIONS, "lab/observations/ holds no record"


@pytest.mark.parametrize("path", OBSERVATIONS, ids=_ids(OBSERVATIONS))
def test_record_is_well_formed(path: Path) -> None:
    record = json.loads(path.read_text())
    assert record["cell"] == path.stem
    assert record["cell"] in CELLS, "every record belongs to a cell in lab/cells*.yaml"
    assert record["pip"] == CELLS[record["cell"]]["pip"], "record is stale: the cell's pins changed"
    if record.get("unresolvable"):
        assert all(isinstance(line, str) for line in record["unresolvable"])
        return
    assert record["versions"]["torch"].startswith("2.13.0")
    assert re.fullmatch(r"\d+\.\d+\.\d+", record["python"])
    for probe, cases in record["probes"].items():
        assert (ROOT / "lab" / "probes" / f"{probe}.py").exists()
        assert cases, f"{probe}: no case"
        for case in cases:
            assert case["outcome"] in OUTCOMES, case
            if case["outcome"] == "raised":
                # env_reads records a class that raised both with and without the variables as its two parts
                parts = [case] if "type" in case else [case["with_env"], case["without_env"]]
                for part in parts:
                    assert part["type"] and isinstance(part["message"], str), case


@pytest.mark.parametrize("path", OBSERVATIONS, ids=_ids(OBSERVATIONS))
def test_record_is_deterministic(path: Path) -> None:
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text)
    assert not TIMESTAMP.search(text), TIMESTAMP.search(text)


def test_generation_table_is_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "lab" / "table.py"), "--check"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def test_observed_releases_are_the_ones_the_records_ran() -> None:
    # in-process twin of `lab/table.py --check` for observed.json: a frontend-only cell (axolotl) and an unresolvable
    # one (lf0.9.4-tf5.6) add no release, and every record after them still does
    from fp8doctor.knowledge.releases import OBSERVED_FILE, observed_from_records

    records = [json.loads(p.read_text()) for p in OBSERVATIONS]
    committed = json.loads((ROOT / "fp8doctor" / "knowledge" / OBSERVED_FILE).read_text())
    assert observed_from_records(records) == committed
    assert "4.46.3" in committed["transformers"]  # only tf4.46-acc1.15, sorted after both
