"""Effective mixed precision and its deciding chain: pure cases, then the prediction checked against the
installed transformers' real TrainingArguments in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from env_facts_helpers import LF_REFERENCE, acc_cfg, cfg, make_facts

from fp8doctor.knowledge.precision import effective_precision, fp8_intent


def stages(prec: dict) -> list[str]:
    return [c["stage"] for c in prec["chain"]]


def test_env_only_fp8_without_trainer() -> None:
    prec = make_facts(env={"ACCELERATE_MIXED_PRECISION": "fp8"})["precision"]
    assert prec["effective"] == "fp8" and not prec["trainer_path"]
    assert stages(prec) == ["env", "Accelerator"]
    assert make_facts()["precision"]["effective"] == "no"


def test_reference_config_on_each_transformers_generation() -> None:
    """LLaMA-Factory 0.9.5 sets ACCELERATE_MIXED_PRECISION=fp8 in its Trainer after TrainingArguments: transformers
    4.x lets the Accelerator read it (FP8 trains; lab cell lf0.9.5-tf4.57-ao), 5.x passes TrainingArguments' bf16 as
    the argument (bf16 wins). 0.9.4 sets nothing (lf0.9.4-tf4.57-ao trains bf16)."""
    for tf, effective in (("4.45.0", "fp8"), ("5.24.0", "bf16")):
        facts = make_facts(packages={"transformers": tf, "llamafactory": "0.9.5", "transformer-engine": "2.4.0"},
                           configs=[cfg("llamafactory", LF_REFERENCE)])
        prec = facts["precision"]
        assert prec["effective"] == effective
        assert stages(prec)[:3] == ["config", "env", "TrainingArguments"] and stages(prec)[-1] == "Accelerator"
        written = any("writes the variable" in c["source"] for c in prec["chain"])
        assert written == tf.startswith("4.")
        assert any("LLaMA-Factory" in c["source"] for c in prec["chain"])
    for lf, effective in (("0.9.4", "bf16"), (None, "unknown")):
        other = make_facts(packages={"transformers": "4.45.0", "llamafactory": lf},
                           configs=[cfg("llamafactory", LF_REFERENCE)])
        assert other["precision"]["effective"] == effective


def test_llamafactory_te_backend_without_te_raises_before_the_accelerator() -> None:
    """LLaMA-Factory 0.9.5 imports transformer_engine for fp8_backend te (lab cell lf0.9.5-tf4.57-ao): without TE
    nothing reaches the Accelerator."""
    facts = make_facts(packages={"transformers": "4.57.6", "llamafactory": "0.9.5"},
                       configs=[cfg("llamafactory", LF_REFERENCE)])
    prec = facts["precision"]
    assert prec["effective"] == "nothing (ModuleNotFoundError before the Accelerator)"
    assert prec["outcome"]["message"] == "No module named 'transformer_engine'"


def test_bf16_false_lets_fp8_through() -> None:
    facts = make_facts(configs=[cfg("llamafactory", {**LF_REFERENCE, "bf16": False})],
                       env={"ACCELERATE_MIXED_PRECISION": "fp8"})
    assert facts["precision"]["effective"] == "fp8"
    assert facts["precision"]["prediction"].startswith("FP8 active")


def test_accelerate_config_applies_only_through_launch() -> None:
    """Accelerator() reads its argument and the environment; the config file only through accelerate launch."""
    launchable = {"distributed_type": "NO", "mixed_precision": "fp8"}
    facts = make_facts(accelerate_config=acc_cfg(launchable), env={"ACCELERATE_MIXED_PRECISION": "no"})
    prec = facts["precision"]
    assert prec["effective"] == "no" and prec["with_launch"] == "fp8" and prec["launch"] == "accelerate launch"
    assert any("applies only through `accelerate launch`" in c["value"] for c in prec["chain"])
    refused = make_facts(accelerate_config=acc_cfg({"mixed_precision": "fp8"}))["precision"]
    assert refused["with_launch"] == "ValueError: A `distributed_type` must be specified in the config file."
    with_lf = make_facts(accelerate_config=acc_cfg({"mixed_precision": "fp8"}),
                         configs=[cfg("llamafactory", LF_REFERENCE)])
    assert with_lf["precision"]["effective"] == "bf16"


def test_exact_values_as_accelerate_compares_them() -> None:
    for value in ("Fp8", "FP8 ", " fp8"):
        prec = make_facts(env={"ACCELERATE_MIXED_PRECISION": value})["precision"]
        assert prec["effective"] == value and prec["outcome"] == {"outcome": "ok", "mixed_precision": value,
                                                                  "fp8": False}


def test_old_gpu_note_and_intent_signs() -> None:
    a100 = {"index": "0", "name": "A100", "cc": [8, 0], "memory_mib": 1, "driver": "1"}
    facts = make_facts(gpus=[a100], env={"ACCELERATE_MIXED_PRECISION": "fp8"})
    assert "fp16" in facts["precision"]["hardware_note"]
    signs = fp8_intent(make_facts(configs=[cfg("deepspeed", {"fp8": {"enabled": True}}, "ds.json")],
                                  env={"ACCELERATE_FP8_FORMAT": "HYBRID"}))
    assert signs == ["ds.json: DeepSpeed `fp8` section", "ACCELERATE_FP8_FORMAT is set"]
    assert fp8_intent(make_facts()) == []


def test_deepspeed_precision_in_chain() -> None:
    prec = effective_precision(make_facts(configs=[cfg("deepspeed", {"bf16": {"enabled": True}}, "ds.json")]))
    assert prec["chain"][0] == {"stage": "config", "source": "ds.json", "value": "bf16: true"}


def test_prediction_matches_real_training_arguments() -> None:
    """What the chain says TrainingArguments ends with, against the installed transformers itself."""
    code = (
        "import json, sys\n"
        "from transformers import TrainingArguments\n"
        "out = {}\n"
        "for bf16 in (True, False):\n"
        "    out[str(bf16)] = TrainingArguments(output_dir=sys.argv[1], bf16=bf16, use_cpu=True,\n"
        "                                       report_to=[]).mixed_precision\n"
        "print('RESULT ' + json.dumps(out))\n"
    )
    env = {**os.environ, "ACCELERATE_MIXED_PRECISION": "fp8"}
    proc = subprocess.run([sys.executable, "-c", code, "/tmp/fp8doctor-test-ta"], env=env, capture_output=True,
                          text=True, timeout=180)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stderr[-2000:]
    real = json.loads(line[0].removeprefix("RESULT "))
    from importlib.metadata import version

    for bf16 in (True, False):
        facts = make_facts(packages={"transformers": version("transformers")},
                           env={"ACCELERATE_MIXED_PRECISION": "fp8"},
                           configs=[cfg("training_args", {"output_dir": "x", "bf16": bf16})])
        ta = [c["value"] for c in facts["precision"]["chain"] if c["stage"] == "TrainingArguments"]
        assert [v.removeprefix("ACCELERATE_MIXED_PRECISION=") for v in ta] == [real[str(bf16)]]
