"""Evaluation in FP8: `fp8doctor watch` of a real Accelerate + torchao run with a validation pass, the rule for TE
on a recorded TE counter, and the knowledge against the lab's observations (eval_fp8, accelerate_te)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fp8doctor.knowledge.evaluation import AO_EVAL_OBSERVED, EVAL_OPTION, eval_in_fp8
from fp8doctor.watch.model_summary import eval_summary

SCRIPTS = Path(__file__).parent / "watch_scripts"
OBSERVATIONS = Path(__file__).resolve().parent.parent / "lab" / "observations"


def test_watch_says_the_torchao_eval_pass_ran_in_fp8() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_"))}
    env.update(HF_HUB_OFFLINE="1")
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "watch", "--format", "json", "--", sys.executable,
                        "eval_script.py"], capture_output=True, text=True, env=env, cwd=SCRIPTS, timeout=600)
    assert p.stdout.startswith("{"), p.stderr[-3000:]
    result = json.loads(p.stdout)
    assert result["verdict"] == "fp8-active", result.get("reason")
    ev = result["ranks"][0]["model"]["eval"]
    assert ev["fp8"] is True and "FP8 module calls in the first eval-mode forward pass" in ev["reason"], ev
    assert int(ev["reason"].split()[0]) > 0
    text = subprocess.run([sys.executable, "-m", "fp8doctor", "watch", "--", sys.executable, "eval_script.py"],
                          capture_output=True, text=True, env=env, cwd=SCRIPTS, timeout=600).stdout
    assert "evaluation: in FP8:" in text, text


def _te_acc(enabled: int, disabled: int) -> tuple[dict, dict]:
    acc = {"result": {"fp8_backend": "TE"}, "eval_forwards": [{"arg_index": 0, "counter": {
        "fp8_module_forwards": enabled + disabled, "te_fp8_enabled_forwards": enabled,
        "te_fp8_disabled_forwards": disabled}}]}
    return acc, {"arg_index": 0, "fp8_layers": ["a", "b"]}


def test_te_eval_without_autocast_is_named_with_its_fix() -> None:
    ev = eval_summary(*_te_acc(enabled=0, disabled=12))
    assert ev["fp8"] is False and "only while model.training" in ev["reason"] and EVAL_OPTION in ev["fix"]
    assert eval_summary(*_te_acc(enabled=12, disabled=0))["fp8"] is True
    acc, model = _te_acc(0, 0)
    acc["eval_forwards"] = []
    assert eval_summary(acc, model) is None


def test_eval_knowledge_matches_the_lab() -> None:
    seen = {}
    for path in OBSERVATIONS.glob("acc*.json"):
        cell = json.loads(path.read_text())
        for case in cell.get("probes", {}).get("eval_fp8", []):
            if case.get("outcome") == "ok":
                seen[".".join(cell["versions"]["accelerate"].split(".")[:2])] = case
    assert seen, "no eval_fp8 observation"
    assert set(seen) <= set(AO_EVAL_OBSERVED)
    for case in seen.values():
        assert case["eval"]["float8_forwards"] == case["train"]["float8_forwards"] > 0
        assert case["eval"]["fp8_changed_output"] is True
    assert eval_in_fp8("AO")["fp8"] is True
    for path in sorted((OBSERVATIONS / "accelerate_te").glob("*.json")):
        handler = json.loads(path.read_text())["recipe_handler"]
        assert EVAL_OPTION in handler["fields"] and EVAL_OPTION in handler["popped"], path.name
    assert eval_in_fp8("TE")["fp8"] is False and EVAL_OPTION in eval_in_fp8("TE")["fix"]
