"""FSDP / DeepSpeed settings read against FP8 (rules/distributed.py) on hand-made facts; the release facts they
ask knowledge/distributed.py are held against the lab in tests/test_distributed_predictions.py."""

from __future__ import annotations

from env_facts_helpers import acc_cfg, by_id, cfg, make_facts

from fp8doctor.findings import Level
from fp8doctor.rules import evaluate

FP8_ENV = {"ACCELERATE_MIXED_PRECISION": "fp8"}


def _find(facts, prefix):
    return by_id(evaluate(facts), prefix)


def test_deepspeed_alone_gives_no_distributed_finding() -> None:
    # the source lead "accelerate <= 1.10 drops fp8 under DeepSpeed" was contradicted by the lab (1.6 trains FP8
    # inside the DeepSpeed engine), so no rule claims it
    for acc in ("1.6.0", "1.15.0"):
        facts = make_facts(packages={"accelerate": acc, "deepspeed": "0.19.8"}, env=FP8_ENV,
                           configs=[cfg("deepspeed", {"zero_optimization": {"stage": 3}}, "ds.json")])
        assert _find(facts, "dist.") == []


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
