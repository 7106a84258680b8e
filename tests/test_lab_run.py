"""lab/run.py's `--only-inputs`: the subset a probe re-observes and how it is merged into the record."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

LAB = Path(__file__).resolve().parents[1] / "lab"


def _lab(name: str) -> Any:
    for folder in (LAB, LAB / "probes"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return __import__(name)


def test_merge_replaces_in_place_and_appends() -> None:
    merge = _lab("run").merge
    old = [{"inputs": {"a": 1}, "outcome": "ok"}, {"inputs": {"a": 2}, "outcome": "ok"}]
    new = [{"inputs": {"a": 2}, "outcome": "raised"}, {"inputs": {"a": 3}, "outcome": "ok"}]
    assert merge(old, new) == [old[0], new[0], new[1]]
    assert merge([], new) == new


def test_selected_matches_inputs_and_env() -> None:
    selected = _lab("_common").selected
    case = {"mp_arg": "fp8", "env": {"ACCELERATE_FP8_BACKEND": "TE"}}
    assert selected(case, None)
    assert selected(case, {"env": {"ACCELERATE_FP8_BACKEND": ["TE", "MSAMP"]}})
    assert not selected(case, {"env": {"ACCELERATE_FP8_BACKEND": ["AO"]}})
    assert not selected({"mp_arg": "fp8", "env": {}}, {"env": {"ACCELERATE_FP8_BACKEND": ["TE"]}})
    assert selected(case, {"mp_arg": ["fp8"]}) and not selected(case, {"mp_arg": ["bf16"]})


def test_bad_only_inputs_is_one_line_and_exit_2(capsys: Any) -> None:
    assert _lab("run").main(["--cells", "acc1.8-tf4.57-ao", "--only-inputs", "[1]"]) == 2
    assert _lab("run").main(["--cells", "acc1.8-tf4.57-ao", "--only-inputs", "{nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("lab/run.py: --only-inputs") for line in err)
