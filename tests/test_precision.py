"""Effective mixed precision and its deciding chain: pure cases, then the prediction checked against the
installed transformers' real TrainingArguments in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from env_facts_helpers import LF_REFERENCE, acc_cfg, cfg, make_facts

from fp8doctor.precision import effective_precision, fp8_intent


def stages(prec: dict) -> list[str]:
    return [c["stage"] for c in prec["chain"]]


def test_env_only_fp8_without_trainer() -> None:
    prec = make_facts(env={"ACCELERATE_MIXED_PRECISION": "fp8"})["precision"]
    assert prec["effective"] == "fp8" and not prec["trainer_path"]
    assert stages(prec) == ["env", "Accelerator"]
    assert make_facts()["precision"]["effective"] == "no"


def test_reference_config_bf16_wins_on_both_generations() -> None:
    for tf in ("4.45.0", "5.24.0"):
        facts = make_facts(packages={"transformers": tf}, configs=[cfg("llamafactory", LF_REFERENCE)],
                           env={"ACCELERATE_MIXED_PRECISION": "fp8"})
        prec = facts["precision"]
        assert prec["effective"] == "bf16"
        assert stages(prec)[:3] == ["config", "env", "TrainingArguments"] and stages(prec)[-1] == "Accelerator"
        rewritten = any("rewritten" in c["value"] for c in prec["chain"])
        assert rewritten == tf.startswith("4.")


def test_bf16_false_lets_fp8_through() -> None:
    facts = make_facts(configs=[cfg("llamafactory", {**LF_REFERENCE, "bf16": False})],
                       env={"ACCELERATE_MIXED_PRECISION": "fp8"})
    assert facts["precision"]["effective"] == "fp8"
    assert "accepted" in facts["precision"]["prediction"]


def test_accelerate_config_reaches_env_through_launch() -> None:
    facts = make_facts(accelerate_config=acc_cfg({"mixed_precision": "fp8"}), env={"ACCELERATE_MIXED_PRECISION": "no"})
    prec = facts["precision"]
    assert prec["effective"] == "fp8" and "accelerate launch" in prec["chain"][-2]["value"]
    with_lf = make_facts(accelerate_config=acc_cfg({"mixed_precision": "fp8"}),
                         configs=[cfg("llamafactory", LF_REFERENCE)])
    assert with_lf["precision"]["effective"] == "bf16"


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
        assert ta == [real[str(bf16)]]
