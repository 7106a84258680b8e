"""`unread_keys` names exactly the fp8_config keys that the lab saw reach no recipe field, for every recorded release
and backend (lab/observations/*.json, probe fp8_config_keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fp8doctor.knowledge.fp8_config_keys import unread_keys, variable_of

OBSERVATIONS = Path(__file__).resolve().parents[1] / "lab" / "observations"


def _cases() -> list[Any]:
    params = []
    for path in sorted(OBSERVATIONS.glob("*.json")):
        rec = json.loads(path.read_text())
        for case in rec.get("probes", {}).get("fp8_config_keys", []):
            if case["inputs"].get("what") == "keys":
                params.append(pytest.param(rec["versions"]["accelerate"], case,
                                           id=f"{rec['cell']}::{case['inputs']['backend']}"))
    return params


def _read(result: dict[str, Any]) -> bool:
    reaches = result.get("reaches") or {}
    return any(isinstance(fields, list) and fields for fields in reaches.values())


@pytest.mark.parametrize(("accelerate", "case"), _cases())
def test_unread_keys_match_the_lab(accelerate: str, case: dict[str, Any]) -> None:
    backend = case["inputs"]["backend"]
    for key, value in case["inputs"]["values"].items():
        observed = case["outcome"] == "ok" and _read(case["keys"][key])
        assert unread_keys(accelerate, {"backend": backend, key: value}) == ([] if observed else [key]), key


def test_a_whole_section_and_unknown_release() -> None:
    """The questionnaire's spellings are unread where the launcher's own are read (1.16, observed above)."""
    section = {"backend": "TE", "amax_history_len": 77, "amax_history_length": 77, "optimization_level": "O1"}
    assert unread_keys("1.16.0", section) == ["amax_history_length", "optimization_level"]
    assert unread_keys("not a version", section) is None
    assert variable_of("fp8_format") == "ACCELERATE_FP8_FORMAT"
    assert variable_of("margin") == "ACCELERATE_FP8_MARGIN"


def test_an_unknown_release_gets_no_claim() -> None:
    from fp8doctor.knowledge.fp8_config_keys import predict_key

    assert predict_key("not a version", backend="TE", key="margin", value=3) == {"outcome": "unknown"}
