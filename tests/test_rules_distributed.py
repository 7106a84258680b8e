"""FSDP / DeepSpeed settings read against FP8 (rules/distributed.py) on hand-made facts; the release facts they
ask knowledge/distributed.py are held against the lab in tests/test_distributed_predictions.py."""

from __future__ import annotations

from env_facts_helpers import acc_cfg, by_id, cfg, make_facts

from fp8doctor.findings import Level
from fp8doctor.rules import evaluate

FP8_ENV = {"ACCELERATE_MIXED_PRECISION": "fp8"}


def _find(facts, prefix):
    return by_id(evaluate(facts), prefix)


def test_deepspeed_before_the_release_that_keeps_fp8_fails_with_the_upgrade() -> None:
    for source in (cfg("deepspeed", {"zero_optimization": {"stage": 3}, "bf16": {"enabled": True}}, "ds.json"),
                   cfg("training_args", {"deepspeed": "ds.json", "bf16": True}, "args.yaml")):
        facts = make_facts(packages={"accelerate": "1.9.0", "deepspeed": "0.19.8"}, env=FP8_ENV, configs=[source])
        [f] = _find(facts, "dist.deepspeed-precision")
        assert f.level is Level.FAIL, f
        assert "accelerate 1.9.0 trains without FP8" in f.title and "mixed_precision to 'no'" in f.detail
        assert "pip install 'accelerate>=1.12'" in f.fix
    newer = make_facts(packages={"accelerate": "1.15.0", "deepspeed": "0.19.8"}, env=FP8_ENV,
                       configs=[cfg("deepspeed", {"zero_optimization": {"stage": 2}}, "ds.json")])
    [ok] = _find(newer, "dist.deepspeed-precision")
    assert ok.level is Level.OK


def test_accelerate_yaml_deepspeed_and_no_intent() -> None:
    yaml_ds = acc_cfg({"distributed_type": "DEEPSPEED", "mixed_precision": "fp8", "fp8_config": {"backend": "AO"},
                       "deepspeed_config": {"zero_stage": 2}})
    facts = make_facts(packages={"accelerate": "1.6.0"}, accelerate_config=yaml_ds)
    [f] = _find(facts, "dist.deepspeed-precision")
    assert f.level is Level.FAIL and "distributed_type DEEPSPEED" in f.title
    quiet = make_facts(packages={"accelerate": "1.6.0"},
                       configs=[cfg("deepspeed", {"zero_optimization": {"stage": 2}}, "ds.json")])
    assert _find(quiet, "dist.") == []


def test_fsdp_version_against_fp8() -> None:
    fsdp1 = acc_cfg({"distributed_type": "FSDP", "mixed_precision": "fp8", "fp8_config": {"backend": "AO"},
                     "fsdp_config": {"fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}}, path="/w/acc.yaml")
    [f] = _find(make_facts(accelerate_config=fsdp1), "dist.fsdp-version")
    assert f.level is Level.WARN and f.title == "FSDP1 (/w/acc.yaml: distributed_type FSDP) with FP8"
    assert "# in /w/acc.yaml, set:" in f.fix and "fsdp_version: 2" in f.fix
    fsdp2 = acc_cfg({"distributed_type": "FSDP", "mixed_precision": "fp8", "fp8_config": {"backend": "AO"},
                     "fsdp_config": {"fsdp_version": 2}}, path="/w/acc.yaml")
    [ok] = _find(make_facts(accelerate_config=fsdp2), "dist.fsdp-version")
    assert ok.level is Level.OK and "before fully_shard" in ok.detail
    args = cfg("training_args", {"fsdp": "full_shard auto_wrap", "fsdp_config": {"version": 2}}, "args.yaml")
    [ta] = _find(make_facts(env=FP8_ENV, configs=[args]), "dist.fsdp-version")
    assert ta.level is Level.OK and ta.title == "FSDP2 (args.yaml: fsdp) with FP8"
