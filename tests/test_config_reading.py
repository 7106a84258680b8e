"""Configs read as the libraries read them: a mixed precision Accelerate does not know, an fp8_config under a
non-fp8 precision (FP8 asked for, bf16 trained), and keys written twice (PyYAML keeps the last, silently)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_env_cli import doctor

from fp8doctor.configs import duplicate_keys


def _findings(proc) -> list[dict]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)["findings"]


@pytest.mark.parametrize(("value", "fix"), [("fp9", "mixed_precision: fp8"), ("BF16", "mixed_precision: bf16")])
def test_unknown_mixed_precision_fails_without_fp8_intent(tmp_path: Path, value: str, fix: str) -> None:
    cfg = tmp_path / "acc.yaml"
    cfg.write_text(f"distributed_type: 'NO'\nmixed_precision: {value}\n")
    proc = doctor(tmp_path, "--config", str(cfg), "--format", "json")
    [f] = [f for f in _findings(proc) if f["id"] == "accel-config.precision"]
    assert f["level"] == "fail" and repr(value) in f["title"] and f["fix"].endswith(fix)
    assert proc.returncode == 1


def test_fp8_config_under_bf16_is_fp8_intent_that_fails(tmp_path: Path) -> None:
    cfg = tmp_path / "acc.yaml"
    cfg.write_text("distributed_type: 'NO'\nmixed_precision: bf16\nfp8_config:\n  backend: AO\n")
    proc = doctor(tmp_path, "--config", str(cfg), "--format", "json")
    doc = json.loads(proc.stdout)
    assert doc["facts"]["intent"] == [f"{cfg}: fp8_config (under mixed_precision: bf16)"]
    by_id = {f["id"]: f for f in doc["findings"]}
    assert by_id["accel-config.precision"]["level"] == "fail"
    assert by_id["precision.effective"]["level"] == "fail"
    assert "mixed_precision: fp8" in by_id["precision.effective"]["fix"]
    assert proc.returncode == 1


def test_duplicate_keys_name_the_key_and_the_winner(tmp_path: Path) -> None:
    cfg = tmp_path / "lf.yaml"
    cfg.write_text("stage: sft\nfp8: true\nbf16: true\nfp8_backend: torchao\nbf16: false\n")
    [f] = [f for f in _findings(doctor(tmp_path, "--config", str(cfg), "--format", "json"))
           if f["id"] == "lint.duplicate-key"]
    assert f["level"] == "fail" and "bf16 is set 2 times; the last one wins (false)" in f["title"]
    assert "line 3: true, line 5: false" in f["detail"]


def test_duplicate_keys_nested_and_through_aliases() -> None:
    text = "a: &x {k: 1, k: 2}\nb: *x\nc:\n  - {m: 1}\n  - {m: 1, m: 1}\n"
    assert duplicate_keys(text) == [{"key": "a.k", "values": [[1, "1"], [1, "2"]]},
                                    {"key": "c.m", "values": [[5, "1"], [5, "1"]]}]
    assert duplicate_keys("a: 1\nb: 2\n") == [] and duplicate_keys(": : :") == []


def test_fp8_config_keys_no_release_reads(tmp_path: Path) -> None:
    """The lab's fp8_config_keys cells: AORecipeKwargs reads pad_inner_dim and enable_fsdp_float8_all_gather from
    1.13 (not in 1.11/1.12); the questionnaire's amax_history_length is read by no release; 1.16 drops MS-AMP, so
    its opt_level is read no more."""
    from env_facts_helpers import acc_cfg, make_facts

    from fp8doctor.rules.accelerate_config import check_fp8_config_keys_unused

    ao = {"backend": "AO", "pad_inner_dim": True, "enable_fsdp_float8_all_gather": False}
    te = {"backend": "TE", "fp8_format": "HYBRID", "amax_history_length": 16, "opt_level": "O2"}
    for accelerate, keys, named in (("1.11.0", ao, "pad_inner_dim, enable_fsdp_float8_all_gather"),
                                    ("1.13.0", ao, None), ("1.15.0", te, "amax_history_length"),
                                    ("1.16.0", te, "amax_history_length, opt_level")):
        facts = make_facts(packages={"accelerate": accelerate},
                           accelerate_config=acc_cfg({"distributed_type": "NO", "mixed_precision": "fp8",
                                                      "fp8_config": keys}))
        found = check_fp8_config_keys_unused(facts)
        assert [f.title.rsplit(": ", 1)[1] for f in found] == ([named] if named else []), (accelerate, found)
