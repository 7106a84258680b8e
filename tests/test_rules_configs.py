"""Accelerate config rules and the config lint (LLaMA-Factory, TrainingArguments, DeepSpeed) on hand-made facts."""

from __future__ import annotations

from env_facts_helpers import LF_REFERENCE, acc_cfg, cfg, make_facts

from fp8doctor.findings import Level
from fp8doctor.rules import accelerate_config, lint


def test_accelerate_config_bf16_while_fp8_intended() -> None:
    facts = make_facts(accelerate_config=acc_cfg({"mixed_precision": "bf16"}),
                       env={"ACCELERATE_FP8_BACKEND": "TE"})
    [f] = accelerate_config.check_config_precision(facts)
    assert f.level is Level.FAIL and "mixed_precision bf16" in f.title and "mixed_precision: fp8" in f.fix
    [f] = accelerate_config.check_config_precision(make_facts(accelerate_config=acc_cfg({"mixed_precision": "bf16"})))
    assert f.level is Level.SKIP
    [f] = accelerate_config.check_config_precision(make_facts())
    assert f.level is Level.SKIP and "No Accelerate config" in f.title
    ok = make_facts(configs=[cfg("accelerate", {"mixed_precision": "fp8", "fp8_config": {"backend": "AO"}})])
    assert [f.level for f in accelerate_config.check_config_precision(ok)] == [Level.OK]


def test_fp8_config_backend_spelling() -> None:
    def levels(backend: str) -> list[Level]:
        facts = make_facts(configs=[cfg("accelerate", {"mixed_precision": "fp8", "fp8_config": {"backend": backend}})])
        return [f.level for f in accelerate_config.check_fp8_config_backend(facts)]

    assert levels("TE") == [Level.OK]
    assert levels("te") == [Level.FAIL]
    assert levels("torchao") == [Level.FAIL]


def test_ao_fsdp_cpu_ram_efficient_loading() -> None:
    data = {"mixed_precision": "fp8", "distributed_type": "FSDP", "fp8_config": {"backend": "AO"},
            "fsdp_config": {"fsdp_version": 2, "fsdp_cpu_ram_efficient_loading": True}}
    [f] = accelerate_config.check_ao_fsdp_cpu_ram(make_facts(accelerate_config=acc_cfg(data)))
    assert f.level is Level.FAIL and "fsdp_cpu_ram_efficient_loading: false" in f.fix
    data["fsdp_config"]["fsdp_cpu_ram_efficient_loading"] = False
    assert accelerate_config.check_ao_fsdp_cpu_ram(make_facts(accelerate_config=acc_cfg(data))) == []


def test_reference_config_fp8_with_bf16_on_each_transformers_generation() -> None:
    facts = make_facts(packages={"transformers": "5.24.0"}, configs=[cfg("llamafactory", LF_REFERENCE)])
    [f] = lint.check_fp8_with_bf16(facts)
    assert f.level is Level.FAIL and "bf16 wins" in f.title and "no FP8" in f.detail
    assert "#   bf16: false" in f.fix and "llamafactory-cli train llamafactory.yaml" in f.fix
    facts = make_facts(packages={"transformers": "4.45.0", "llamafactory": "0.9.5"},
                       configs=[cfg("llamafactory", {**LF_REFERENCE, "fp8_backend": "torchao"})])
    [f] = lint.check_fp8_with_bf16(facts)
    assert f.level is Level.OK and "FP8 active" in f.detail
    ta = make_facts(packages={"transformers": "4.45.0"}, configs=[cfg("training_args", LF_REFERENCE)])
    [f] = lint.check_fp8_with_bf16(ta)
    assert f.level is Level.FAIL and "accelerate launch --config_file accelerate_fp8.yaml train.py" in f.fix
    facts = make_facts(configs=[cfg("llamafactory", {**LF_REFERENCE, "bf16": False})])
    assert lint.check_fp8_with_bf16(facts) == []


def test_fp8_backend_auto_resolves_to_torchao() -> None:
    auto = {**LF_REFERENCE, "fp8_backend": "auto"}
    [f] = lint.check_fp8_backend_auto(make_facts(configs=[cfg("llamafactory", auto)],
                                                 packages={"transformer-engine": "2.9.0"}))
    assert f.level is Level.WARN and "torchao" in f.title and "Transformer Engine 2.9.0" in f.detail
    assert lint.check_fp8_backend_auto(make_facts(configs=[cfg("llamafactory", auto)],
                                                  packages={"torchao": None})) == []
    [f] = lint.check_fp8_backend_auto(make_facts(configs=[cfg("llamafactory", LF_REFERENCE)]))
    assert "fp8_backend te" in f.title and "FP8_BACKEND" in f.detail and "ACCELERATE_FP8_BACKEND=TE" in f.fix
    assert lint.check_fp8_backend_auto(make_facts(configs=[cfg("llamafactory", LF_REFERENCE)],
                                                  env={"ACCELERATE_FP8_BACKEND": "TE"})) == []


def test_fp8_with_quantization_and_unsupported_stage() -> None:
    qlora = {**LF_REFERENCE, "quantization_bit": 4}
    [f] = lint.check_fp8_quantization(make_facts(configs=[cfg("llamafactory", qlora)]))
    assert f.level is Level.FAIL and "quantization_bit: 4" in f.title
    [f] = lint.check_fp8_stage(make_facts(configs=[cfg("llamafactory", {**LF_REFERENCE, "stage": "dpo"})]))
    assert f.level is Level.WARN and "dpo" in f.title
    assert lint.check_fp8_stage(make_facts(configs=[cfg("llamafactory", LF_REFERENCE)])) == []


def test_deepspeed_fp8_section() -> None:
    ds = {"zero_optimization": {"stage": 2}, "bf16": {"enabled": True}, "fp8": {"enabled": True}}
    [f] = lint.check_deepspeed_fp8(make_facts(configs=[cfg("deepspeed", ds, "ds.json")]))
    assert f.level is Level.WARN and "ds.json" in f.title
    del ds["fp8"]
    assert lint.check_deepspeed_fp8(make_facts(configs=[cfg("deepspeed", ds, "ds.json")])) == []


def test_accelerate_launch_refusals_named_with_the_library_reason() -> None:
    """Lab launch_config: every release refuses a file without distributed_type; 1.8 crashes exporting an fp8
    fp8_config (TypeError), 1.4 too (AttributeError); <= 1.3 wants TE or MS-AMP."""
    reference = {"mixed_precision": "fp8", "fp8_config": {"backend": "TE", "fp8_format": "HYBRID"}}
    [f] = accelerate_config.check_launch_accepts(make_facts(accelerate_config=acc_cfg(reference)))
    assert f.level is Level.FAIL and f.detail.endswith("ValueError: A `distributed_type` must be specified in the "
                                                        "config file.")
    assert "distributed_type: 'NO'" in f.fix and "accelerate launch --config_file accelerate_fp8.yaml" in f.fix
    ok = {**reference, "distributed_type": "NO"}
    assert accelerate_config.check_launch_accepts(make_facts(accelerate_config=acc_cfg(ok))) == []
    for version, line in (("1.8.1", "TypeError: expected str, bytes or os.PathLike object, not bool"),
                          ("1.4.0", "AttributeError: 'tuple' object has no attribute 'strip'"),
                          ("1.3.0", "RuntimeError: FP8 is not available on this machine.")):
        [f] = accelerate_config.check_launch_accepts(make_facts(packages={"accelerate": version},
                                                                accelerate_config=acc_cfg(ok)))
        assert line in f.detail and "pip install 'accelerate>=1.9'" in f.fix
