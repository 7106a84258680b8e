"""Verdicts on hand-written result dicts (the classifier is a pure function)."""

from __future__ import annotations

import pytest

from fp8doctor.runs.verdicts import VERDICTS, classify, is_fp8_mixed_precision_error


def result(**kw):
    base = {"spec": {"backend": "torchao", "entry": "accelerator"}, "outcome": "finished", "error": None,
            "accelerator": {"mixed_precision": "fp8"}, "fp8_layers": ["a", "b"], "eligible_layers": ["a", "b", "c"],
            "forwards": {"fp8_module_forwards": 10}, "fp8_active": True, "losses": [5.0, 4.0]}
    base.update(kw)
    return base


@pytest.mark.parametrize("message", [
    "Passing in an FP8 configuration requires setting `mixed_precision='fp8'`.",
    "Passing in a FP8RecipeKwargs object requires setting `mixed_precision='fp8'`.",
    "Passing in a `FP8RecipeKwargs` object requires setting `mixed_precision=\"fp8\"`.",
])
def test_accelerate_message_variants_are_reproduced(message):
    r = result(outcome="raised", error={"type": "ValueError", "message": message, "where": "accelerate/x.py:1"})
    v = classify(r)
    assert v.name == "reproduced"
    assert "accelerate/x.py:1" in v.reason


def test_other_value_error_is_failed():
    err = {"type": "ValueError", "message": "mixed_precision must be one of no, fp16, bf16, fp8", "where": "x"}
    assert classify(result(outcome="raised", error=err)).name == "failed"
    assert not is_fp8_mixed_precision_error({"type": "RuntimeError", "message":
                                             "Passing in an FP8 configuration requires setting "
                                             "`mixed_precision='fp8'`."})


def test_fp8_active_and_silent_bf16():
    assert classify(result()).name == "fp8-active"
    no_layers = classify(result(fp8_layers=[], fp8_active=False, accelerator={"mixed_precision": "bf16"}))
    assert no_layers.name == "silent-bf16" and "0/3" in no_layers.reason and "bf16" in no_layers.reason
    idle = classify(result(fp8_active=False, forwards={"fp8_module_forwards": 0}))
    assert idle.name == "silent-bf16" and "not active" in idle.reason


def test_fp32_run_is_fp8_off_not_silent_bf16():
    fp32 = classify(result(fp8_layers=[], fp8_active=False, accelerator={"mixed_precision": "no"}))
    assert fp32.name == "fp8-off" and "mixed_precision='no'" in fp32.reason


def test_failures_and_not_applicable():
    assert classify(result(outcome="crashed", error={"signal": "SIGSEGV"})).reason.endswith("(SIGSEGV)")
    assert classify(result(outcome="timed_out", error={"message": "no result within 3 s"})).name == "failed"
    assert classify(result(losses=[5.0, "nan"])).name == "failed"
    skipped = classify(result(outcome="skipped", skip_reason="Transformer Engine is not installed"))
    assert skipped.name == "not-applicable" and "not installed" in skipped.reason
    assert classify(result(spec={"backend": "none"}, fp8_layers=[], fp8_active=False)).name == "bf16-baseline"
    assert {v for v in VERDICTS} >= {"reproduced", "silent-bf16", "fp8-active", "not-applicable", "failed"}
