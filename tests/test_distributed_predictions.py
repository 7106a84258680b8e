"""knowledge/distributed.py against the lab: every case lab/probes/distributed.py recorded in a cell of
lab/cells_dist.yaml is predicted from the cell's accelerate version, field by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fp8doctor.knowledge import distributed

BUILD_LOCK = "torch/utils/file_baton.py:wait"
OBSERVATIONS = sorted((Path(__file__).resolve().parents[1] / "lab" / "observations").glob("dist-*.json"))


def _cases(path: Path) -> list[dict]:
    record = json.loads(path.read_text())
    return [c for c in record["probes"]["distributed"] if "plugin" in c.get("inputs", {})]


def test_every_distributed_cell_was_observed() -> None:
    assert {p.stem for p in OBSERVATIONS} == {"dist-acc1.6-tf4.57-ao-ds", "dist-acc1.9-tf4.57-ao-ds",
                                              "dist-acc1.12-tf4.57-ao-ds", "dist-acc1.15-tf5.24-ao-ds"}


@pytest.mark.parametrize("path", OBSERVATIONS, ids=lambda p: p.stem)
def test_predictions_match_the_observed_cases(path: Path) -> None:
    record = json.loads(path.read_text())
    accelerate = record["versions"]["accelerate"]
    compared = 0
    for case in _cases(path):
        if case.get("deepspeed_op_build") != "ok" and case.get("hung_at") == [BUILD_LOCK]:
            continue  # the lab's DeepSpeed op build did not finish on the loaded machine: nothing was observed
        predicted = distributed.predict(accelerate, case["inputs"])
        observed = {k: case.get(k) for k in predicted}
        assert observed == predicted, (case["inputs"], case)
        if case["outcome"] == "ok":
            assert case["ranks_agree"], case
        if predicted.get("type") == "ValueError":
            assert case["message"].startswith(distributed.FSDP1_CPU_MESSAGE), case
        compared += len(predicted)
    assert compared >= 30, compared  # the cell's cases were compared, not skipped


def test_deepspeed_on_cpu_was_observed_and_the_skip_says_what_was_seen() -> None:
    observed = {p.stem: c for p in OBSERVATIONS for c in _cases(p) if c["inputs"]["plugin"].startswith("deepspeed")
                and not c["inputs"]["use_cpu"] and c["inputs"]["precision"] == "fp8" and c["outcome"] != "hung"}
    old = observed["dist-acc1.6-tf4.57-ao-ds"]  # trains: FP8 converted before deepspeed.initialize
    assert (old["outcome"], old["prepared_class"], old["fp8_inside_units"]) == ("ok", "DeepSpeedEngine", 13)
    reason = distributed.deepspeed_entry_skip("0.19.8", on_cpu=True)
    assert distributed.DEEPSPEED_BATCH_MESSAGE in reason and "accelerate 1.6 and 1.12 train" in reason
    new = observed["dist-acc1.15-tf5.24-ao-ds"]
    assert new["outcome"] == "raised" and new["message"].startswith(distributed.DEEPSPEED_BATCH_MESSAGE)
    assert distributed.deepspeed_entry_skip("0.19.8", on_cpu=False) is None
    assert distributed.deepspeed_entry_skip(None, on_cpu=False) == distributed.DEEPSPEED_MISSING
