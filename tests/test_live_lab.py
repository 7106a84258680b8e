"""Live lab: a few cells rebuilt and probed for real on every CI run, compared with their recorded observations and
with the doctor's predictions, so a new release behind a pin, a wrong record or a drifting doctor is caught.

Runs only with FP8DOCTOR_LIVE_LAB=1 (it builds virtual environments: a few minutes on 2 cores); .ci/run enables it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from test_generation_predictions import assert_prediction, core_of

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "lab"
# accelerate 1.8 (env-only fp8 raises; torchao path broken) on transformers 4.57 (writes the variable, passes no
# argument): one cell covers both boundaries the issue names. The main environment (accelerate 1.15 +
# transformers 5.24) is exercised for real by the rest of the suite. About 10 minutes on 2 loaded cores
# (torch base + one cell + three probes).
LIVE_CELLS = ("acc1.8-tf4.57-ao",)
LIVE_PROBES = ("accelerator", "training_args", "reference_patch")

pytestmark = [
    pytest.mark.live_lab,
    pytest.mark.skipif(os.environ.get("FP8DOCTOR_LIVE_LAB") != "1", reason="live lab runs with FP8DOCTOR_LIVE_LAB=1"),
]


def _lab() -> Any:
    if str(LAB) not in sys.path:
        sys.path.insert(0, str(LAB))
    import run as lab_run

    return lab_run


@pytest.fixture(scope="module")
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cells built for this run only (FP8DOCTOR_LIVE_LAB_CACHE to reuse a folder): never the developer's lab cache,
    whose cells a running `lab/run.py` may be building at the same moment."""
    return Path(os.environ.get("FP8DOCTOR_LIVE_LAB_CACHE") or tmp_path_factory.mktemp("live-lab-cache"))


@pytest.mark.parametrize("cell_name", LIVE_CELLS)
def test_live_cell_matches_record_and_prediction(cell_name: str, own_cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FP8DOCTOR_LAB_CACHE", str(own_cache))
    lab_run = _lab()
    [cell] = [c for c in lab_run.load_cells() if c["name"] == cell_name]
    path = LAB / "observations" / f"{cell_name}.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    probes = [p for p in LIVE_PROBES if (LAB / "probes" / f"{p}.py").exists()]
    live = lab_run.observe_cell(cell, probes)  # re-probes these; keeps the record's other probes as they were
    assert not live.get("unresolvable"), live.get("unresolvable")
    for probe in probes:
        cases = live["probes"][probe]
        old = recorded.get("probes", {}).get(probe)
        if old is not None:
            assert [c["inputs"] for c in cases] == [c["inputs"] for c in old], f"{probe}: the cases changed"
            changed = [(c["inputs"], core_of(probe, o), core_of(probe, c)) for c, o in zip(cases, old, strict=True)
                       if core_of(probe, c) != core_of(probe, o)]
            assert changed == [], f"{cell_name} {probe}: the release now behaves differently from its record"
        for case in cases:
            assert_prediction(live, probe, case)


def test_live_repro_in_the_ci_cell_matches_its_record(own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fp8doctor repro --python CELL` in the cell built above: the same rows, verdicts and engine expectations as
    lab/observations/repro/<cell>.json, and no UNEXPECTED row."""
    monkeypatch.setenv("FP8DOCTOR_LAB_CACHE", str(own_cache))
    _lab()
    import repro_cells

    [cell] = [c for c in repro_cells.load_cells() if c["name"] == LIVE_CELLS[0]]
    recorded = json.loads((LAB / "observations" / "repro" / f"{cell['name']}.json").read_text())
    live = repro_cells.observe_cell(cell)
    assert "error" not in live and not live.get("unresolvable"), live.get("error") or live.get("unresolvable")
    assert live["unexpected"] == 0, [r for r in live["rows"] if r["unexpected"]]

    def core(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(r["id"], r["expected"], r["verdict"], r["observed"]["outcome"],
                 (r["observed"].get("error") or {}).get("type")) for r in rows]

    assert core(live["rows"]) == core(recorded["rows"])
    assert {k: live["versions"][k] for k in ("accelerate", "transformers", "torchao")} == {
        k: recorded["versions"][k] for k in ("accelerate", "transformers", "torchao")}
