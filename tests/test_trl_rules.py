"""TRL in `env`: a TRL YAML is recognised, linted against the lab's TRL cells (bf16 unset -> True from 0.19), TRL
installed with FP8 asked is a warning naming the field, and the fix is TRL's own for the command the user runs.
The fixes are executed in tests/test_trl_fix_executed.py."""

from __future__ import annotations

from pathlib import Path

import yaml
from env_facts_helpers import cfg, make_facts

from fp8doctor.configs import load_config
from fp8doctor.findings import Level
from fp8doctor.knowledge.fixes import LAUNCH_ALL_GATHER, fixes_for, render
from fp8doctor.rules import frontends

FP8_ENV = {"ACCELERATE_MIXED_PRECISION": "fp8"}
SFT_YAML = {"model_name_or_path": "m", "dataset_name": "d", "output_dir": "out", "max_steps": 2}


def test_trl_yaml_is_a_trl_config(tmp_path: Path) -> None:
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump({**SFT_YAML, "packing": False}))
    assert load_config(path)["kind"] == "trl"
    path.write_text(yaml.safe_dump({**SFT_YAML, "stage": "sft", "finetuning_type": "full"}))
    assert load_config(path)["kind"] == "llamafactory"


def test_installed_trl_with_fp8_asked_warns_and_names_the_field() -> None:
    [f] = frontends.check_frontend_overrides(make_facts(packages={"trl": "1.16.0"}, env=FP8_ENV))
    assert f.level is Level.WARN and "TRL 1.16.0" in f.title and "bf16=False in your SFTConfig" in f.detail
    assert "# in your SFTConfig / DPOConfig / GRPOConfig (TRL), set:" in f.fix and "#   bf16: false" in f.fix
    [f] = frontends.check_frontend_overrides(make_facts(packages={"trl": "0.18.0"}, env=FP8_ENV))
    assert f.level is Level.OK
    [f] = frontends.check_frontend_overrides(make_facts(packages={"trl": "1.16.0"}))
    assert f.level is Level.SKIP
    assert frontends.check_frontend_overrides(make_facts(env=FP8_ENV)) == []


def test_trl_config_lint_follows_the_release() -> None:
    def level(data: dict, trl: str | None) -> Level:
        [f] = frontends.check_trl_config(make_facts(packages={"trl": trl}, env=FP8_ENV,
                                                    configs=[cfg("trl", data, "sft.yaml")]))
        return f.level

    assert level(SFT_YAML, "1.16.0") is Level.FAIL and level(SFT_YAML, "0.19.1") is Level.FAIL
    assert level(SFT_YAML, "0.18.0") is Level.OK
    assert level({**SFT_YAML, "bf16": False}, "1.16.0") is Level.OK
    assert level({**SFT_YAML, "bf16": "true"}, "0.18.0") is Level.FAIL
    assert level(SFT_YAML, None) is Level.FAIL  # not installed here: the newest behaviour


def test_effective_precision_knows_the_trl_default() -> None:
    facts = make_facts(packages={"trl": "1.16.0", "transformers": "5.24.0"}, env=FP8_ENV,
                       configs=[cfg("trl", SFT_YAML)])
    assert facts["precision"]["effective"] == "bf16"
    facts = make_facts(packages={"trl": "0.18.0", "transformers": "5.24.0"}, env=FP8_ENV,
                       configs=[cfg("trl", SFT_YAML)])
    assert facts["precision"]["effective"] == "fp8"


def test_trl_fix_for_each_command_form() -> None:
    base = {"packages": {"accelerate": "1.15.0", "trl": "1.16.0"}, "frontend": "TRL", "configs": []}
    [fix] = fixes_for({**base, "command": ["/v/bin/python", "sft.py", "--x"]}, "AO")
    assert fix.key == "trl" and fix.command == ("/v/bin/python", "sft.py", "--x")
    assert fix.env == {"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": "AO",
                       "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": "false"}  # accelerate 1.15: optimizer_params
    [fix] = fixes_for({**base, "command": ["/v/bin/trl", "sft", "--bf16", "true", "--mixed_precision=bf16", "--x"]},
                      "AO")
    assert fix.command == ("/v/bin/trl", "sft", "--x", "--bf16", "false", "--mixed_precision", "fp8",
                           *LAUNCH_ALL_GATHER)
    assert fix.env == {"ACCELERATE_FP8_BACKEND": "AO"}  # launch's --fp8_backend ao is refused by the Accelerator
    [fix] = fixes_for({**base, "command": ["accelerate", "launch", "sft.py"]}, "AO")
    assert fix.command == ("accelerate", "launch", "--config_file", "accelerate_fp8.yaml", "sft.py") and fix.files
    facts = {**base, "frontend": None, "configs": [cfg("trl", {**SFT_YAML, "num_generations": 2}, "g.yaml")]}
    [fix] = fixes_for(facts, "AO")
    assert fix.command == ("trl", "grpo", "--config", "g.yaml", "--mixed_precision", "fp8", *LAUNCH_ALL_GATHER)
    assert fix.edits == {"g.yaml": {"bf16": False}} and "#   bf16: false" in "\n".join(render(fix))


def _trl_cli_processes(trl_module: str = "trl.trainer.sft_config") -> list[dict]:
    """The two processes `watch -- trl sft ...` recorded in the TRL 1.16 cell with ACCELERATE_MIXED_PRECISION=fp8
    exported (trimmed): the `trl` launcher, and the training process accelerate launch started with 'no'."""
    targs = {"cls": "SFTConfig", "module": trl_module, "bf16": True, "fp16": False, "mixed_precision": "bf16",
             "env_before": {"ACCELERATE_MIXED_PRECISION": "no"}, "env_after": {"ACCELERATE_MIXED_PRECISION": "no"}}
    acc = {"arg_mixed_precision": "bf16", "env": {"ACCELERATE_MIXED_PRECISION": "no"}, "handlers": [],
           "fp8_handlers": [], "result": {"mixed_precision": "bf16", "fp8_enabled": False, "fp8_backend": "AO"},
           "trainer_args": {"trainer_class": "SFTTrainer", "args_class": "SFTConfig", "args_module": trl_module,
                            "bf16": True, "fp16": False, "mixed_precision": "bf16"},
           "prepares": [{"models": [], "error": {"type": "AttributeError",
                                                 "message": "'NoneType' object has no attribute 'config'"}}]}
    return [{"pid": 10, "ppid": 1, "argv": ["/v/bin/trl", "sft", "--x"], "accelerators": [], "training_args": [],
             "env_at_start": {"ACCELERATE_MIXED_PRECISION": "fp8"}, "exited": True},
            {"pid": 11, "ppid": 10, "argv": ["/v/trl/scripts/sft.py", "--x"], "accelerators": [acc],
             "training_args": [targs], "env_at_start": {"ACCELERATE_MIXED_PRECISION": "no"},
             "versions": {"trl": "1.16.0", "accelerate": "1.15.0"}, "exited": True}]


def test_watch_names_trl_and_the_launcher() -> None:
    from fp8doctor.watch.verdicts import facts_from_processes, fix_hint, overall_verdict

    procs = _trl_cli_processes()
    v = overall_verdict(procs)
    assert v["verdict"] == "silent-bf16" and v["frontend"] == "TRL" and v["winner"] == "the launcher"
    assert "pid 10: trl sft" in v["reason"] and "TRL SFTConfig(bf16=True) passed mixed_precision='bf16'" in v["reason"]
    assert "TRL 1.16.0 defaults bf16 to True" in v["reason"]
    assert v["reason"].endswith("then prepare() raised AttributeError: 'NoneType' object has no attribute 'config'")
    facts = {**facts_from_processes(procs), "command": ["/v/bin/trl", "sft", "--x"]}
    assert fix_hint(v, facts)[-1] == "/v/bin/trl sft --x --bf16 false --mixed_precision fp8"
    plain = overall_verdict(_trl_cli_processes("my_pkg.config"))
    assert "frontend" not in plain and "TRL" not in plain["reason"]


def test_peft_findings_follow_the_lab() -> None:
    def found(peft: str, env: dict | None = FP8_ENV, accelerate: str = "1.15.0") -> list:
        return frontends.check_peft_over_fp8(make_facts(
            packages={"peft": peft, "torchao": "0.18.0", "accelerate": accelerate}, env=env))

    [f] = found("0.18.0")
    assert f.level is Level.FAIL and "LinearActivationQuantizedTensor" in f.detail
    assert f.fix == "pip install 'peft>=0.19'"
    for release in ("0.19.1", "0.20.0", "0.21.2"):
        [f] = found(release)
        assert f.level is Level.WARN and "multiple of 16 become FP8 layers" in f.title and "never train" in f.title
    assert "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER=false" in f.fix  # optimizer.fp8-weights' own fix
    # The adapters train where Accelerate's config keeps the all-gather off: the variable, or accelerate 1.12.
    for f in (found("0.21.2", env={**FP8_ENV, "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": "false"})[0],
              found("0.21.2", accelerate="1.12.0")[0]):
        assert f.level is Level.OK and "adapters train with this start" in f.title, f
    # Not observed: said, no claim.
    [f] = found("0.21.2", accelerate="1.20.0")
    assert f.level is Level.SKIP and "not observed for accelerate 1.20.0" in f.title
    [f] = found("0.17.0")
    assert f.level is Level.SKIP and "not observed" in f.title and "oldest: 0.18.0" in f.detail
    assert found("0.21.2", env={}) == []  # FP8 not asked


def test_frontend_releases_the_lab_did_not_run_are_said_so() -> None:
    def overrides(trl: str) -> list:
        return frontends.check_frontend_overrides(make_facts(packages={"trl": trl}, env=FP8_ENV))

    [f] = overrides("0.10.0")  # older than every TRL observed: no claim either way
    assert f.level is Level.SKIP and "not observed" in f.title and "oldest: 0.18.0" in f.detail
    [f] = overrides("1.10.0")
    assert f.level is Level.WARN and "trl 1.10.0: not observed (the lab ran 0.19.1 and 1.16.0)" in f.detail
    [f] = overrides("2.0.0")
    assert f.level is Level.WARN and "newer than any release observed: predicted as 1.16.0" in f.detail
    [f] = overrides("1.16.0")
    assert "observed" not in f.detail.replace("(observed from TRL 0.19", "")
    [lint] = frontends.check_trl_config(make_facts(packages={"trl": "0.10.0"}, env=FP8_ENV,
                                                   configs=[cfg("trl", {"dataset_name": "x"}, "sft.yaml")]))
    assert lint.level is Level.SKIP and "no claim" in lint.title
    [peft] = frontends.check_peft_over_fp8(make_facts(packages={"peft": "0.22.0", "torchao": "0.18.0"}, env=FP8_ENV))
    assert "peft 0.22.0: newer than any release observed: predicted as 0.21.2" in peft.detail
