"""axolotl in `env`: an axolotl YAML is recognised and linted against the lab's axolotl cell (its own `fp8` key sets
ACCELERATE_MIXED_PRECISION, replacing an exported fp8; its CLI refuses fp8 without a GPU of compute capability 9.0+),
axolotl installed with FP8 asked is a warning naming the field, and the fix is axolotl's own key with the command kept
in the form the user ran. The fix is executed in tests/test_axolotl_fix_executed.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from env_facts_helpers import H100, cfg, make_facts

from fp8doctor.configs import load_config
from fp8doctor.findings import Level
from fp8doctor.knowledge.command_forms import parse
from fp8doctor.knowledge.fixes import fixes_for, render
from fp8doctor.knowledge.frontends import AXOLOTL_NO_FP8_GPU
from fp8doctor.rules import frontends

FP8_ENV = {"ACCELERATE_MIXED_PRECISION": "fp8"}
AXO = {"base_model": "./model", "micro_batch_size": 1, "sequence_len": 64, "bf16": True,
       "datasets": [{"path": "data.jsonl", "type": "completion"}]}
A100 = {**H100, "name": "NVIDIA A100", "cc": [8, 0]}


def test_axolotl_yaml_is_an_axolotl_config(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**AXO, "bf16": "auto", "lora_r": 8}))  # lora_r alone would say TRL
    assert load_config(path)["kind"] == "axolotl"
    path.write_text(yaml.safe_dump({**AXO, "fp8": "maybe"}))
    with pytest.raises(Exception, match="`fp8` must be true or false"):
        load_config(path)


def _lint(data: dict, gpus: list | None = None) -> tuple[Level, str, str]:
    [f] = frontends.check_axolotl_config(make_facts(packages={"axolotl": "0.19.0"}, env=FP8_ENV, gpus=gpus,
                                                    configs=[cfg("axolotl", data, "cfg.yaml")]))
    return f.level, f.title, f.detail


def test_axolotl_config_lint() -> None:
    level, title, _ = _lint(AXO)
    assert level is Level.FAIL and "ACCELERATE_MIXED_PRECISION=bf16" in title and "axolotl 0.19.0" in title
    level, title, _ = _lint({**AXO, "bf16": False})
    assert level is Level.FAIL and "ACCELERATE_MIXED_PRECISION=no" in title
    level, title, detail = _lint({**AXO, "fp8": True}, gpus=[])
    assert level is Level.WARN and AXOLOTL_NO_FP8_GPU in detail and "no CUDA GPU" in title
    level, title, _ = _lint({**AXO, "fp8": True}, gpus=[A100])
    assert level is Level.WARN and "compute capability 8.0" in title
    level, _, detail = _lint({**AXO, "fp8": True})
    assert level is Level.OK and "torch_compile: true" in detail
    level, _, detail = _lint({**AXO, "fp8": True, "torch_compile": True})
    assert level is Level.OK and detail == ""
    [f] = frontends.check_axolotl_config(make_facts(configs=[cfg("axolotl", AXO)]))
    assert f.level is Level.SKIP


def test_effective_precision_is_what_axolotl_sets() -> None:
    facts = make_facts(packages={"axolotl": "0.19.0"}, env=FP8_ENV, configs=[cfg("axolotl", AXO)])
    assert facts["precision"]["effective"] == "bf16"
    facts = make_facts(packages={"axolotl": "0.19.0"}, configs=[cfg("axolotl", {**AXO, "fp8": True})])
    assert facts["precision"]["effective"] == "fp8"


def test_installed_axolotl_with_fp8_asked_warns_and_names_the_field() -> None:
    [f] = frontends.check_frontend_overrides(make_facts(packages={"axolotl": "0.19.0"}, env=FP8_ENV))
    assert f.id == "frontend.axolotl" and f.level is Level.WARN and "`fp8: true` in your axolotl config" in f.detail
    assert "# in your axolotl config YAML, set:" in f.fix and "#   fp8: true" in f.fix
    [f] = frontends.check_frontend_overrides(make_facts(packages={"axolotl": "0.19.0"}))
    assert f.level is Level.SKIP
    assert frontends.check_frontend_overrides(make_facts(packages={"axolotl": "0.19.0"}, env=FP8_ENV,
                                                         configs=[cfg("axolotl", AXO)])) == []


@pytest.mark.parametrize("cmd", [
    ["axolotl", "train", "cfg.yaml"],
    ["/venv/bin/axolotl", "train", "cfg.yaml", "--launcher", "python"],
    ["/venv/bin/python", "-m", "axolotl.cli.train", "cfg.yaml"],
    ["accelerate", "launch", "--num_processes", "1", "-m", "axolotl.cli.train", "cfg.yaml"],
])
def test_axolotl_fix_keeps_the_command(cmd: list[str]) -> None:
    facts = make_facts(packages={"axolotl": "0.19.0"}, env=FP8_ENV)
    facts["command"] = cmd
    [fix] = fixes_for(facts, "AO")
    assert fix.key == "axolotl" and fix.command == tuple(cmd) and fix.edits == {"cfg.yaml": {"fp8": True}}
    assert not fix.env and not fix.files  # an exported variable or an Accelerate config would be replaced
    assert parse(list(fix.command)) == parse(cmd)
    assert render(fix)[-1].split()[0] == cmd[0]


def test_axolotl_fix_for_a_named_config_without_command() -> None:
    facts = make_facts(packages={"axolotl": "0.19.0"}, env=FP8_ENV, configs=[cfg("axolotl", AXO, "my run.yaml")])
    [fix] = fixes_for(facts, "TE")
    assert fix.command == ("axolotl", "train", "my run.yaml") and fix.backend == "AO"
    assert render(fix)[-1] == "axolotl train 'my run.yaml'"


def test_axolotl_all_gather_without_fsdp_fails_with_the_key_as_its_fix() -> None:
    def found(data: dict, axolotl: str | None = "0.19.0") -> list:
        return frontends.check_axolotl_config(make_facts(packages={"axolotl": axolotl}, env=FP8_ENV,
                                                         configs=[cfg("axolotl", data, "cfg.yaml")]))

    on = {**AXO, "fp8": True, "fp8_enable_fsdp_float8_all_gather": True}
    lint, weights = found(on)
    assert lint.id == "lint.axolotl-fp8" and lint.level is Level.OK
    assert weights.id == "lint.axolotl-fp8-weights" and weights.level is Level.FAIL
    assert "never train" in weights.title and "4 of 4 FP8 weights outside the optimizer" in weights.detail
    assert "#   fp8: true" in weights.fix and "#   fp8_enable_fsdp_float8_all_gather: false" in weights.fix
    assert weights.fix.splitlines()[-1] == "axolotl train cfg.yaml"
    assert [f.id for f in found({**on, "fp8_enable_fsdp_float8_all_gather": False})] == ["lint.axolotl-fp8"]
    assert [f.id for f in found({**AXO, "fp8": True})] == ["lint.axolotl-fp8"]  # unset: None, as observed
    # Config spellings axolotl reads as false are false.
    for spelled in ("false", "False", "no"):
        assert [f.id for f in found({**on, "fp8_enable_fsdp_float8_all_gather": spelled})] == ["lint.axolotl-fp8"]
    assert [f.id for f in found({**on, "fsdp": "false"})] == ["lint.axolotl-fp8", "lint.axolotl-fp8-weights"]
    # Not observed: FSDP (its prepare re-creates parameters), DeepSpeed, another axolotl minor, not installed.
    for facts in (found({**on, "fsdp_version": 2}), found({**on, "deepspeed": "zero2.json"}),
                  found(on, axolotl="0.18.0"), found(on, axolotl=None)):
        lint, weights = facts
        assert weights.id == "lint.axolotl-fp8-weights" and weights.level is Level.SKIP
        assert "not observed" in weights.title and weights.fix in ("", None)


def test_axolotl_releases_the_lab_did_not_run_are_said_so() -> None:
    [f] = frontends.check_frontend_overrides(make_facts(packages={"axolotl": "0.18.0"}, env=FP8_ENV))
    assert f.level is Level.SKIP and "not observed" in f.title and "oldest: 0.19.0" in f.detail
    [f] = frontends.check_frontend_overrides(make_facts(packages={"axolotl": "0.20.0"}, env=FP8_ENV))
    assert f.level is Level.WARN and "axolotl 0.20.0: newer than any release observed: predicted as 0.19.0" in f.detail
