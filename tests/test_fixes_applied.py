"""Each printed torchao fix (knowledge/fixes.py), applied to the setup it was printed for, makes the engine predict
FP8 active: its exports, its `accelerate launch` config, its edits of the user's own configs and its upgrade are
applied to the facts as a user would apply them, read by the one reading of intent, and predicted on the releases
of a lab cell (accelerate 1.6 without env fp8, 1.11, 1.16 with transformers 5). Unfixed, none of them is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from env_facts_helpers import LF_REFERENCE, cfg, make_facts

from fp8doctor.knowledge.engine import Stack, predict
from fp8doctor.knowledge.fixes import ACCELERATE_YAML, TE_UNPROVEN, Fix, fixes_for, upgrade_line
from fp8doctor.knowledge.generations import accelerate_min
from fp8doctor.knowledge.intent import read_intent
from fp8doctor.knowledge.predict import TE_MISSING_NEW, TE_MODULE_MISSING
from fp8doctor.knowledge.releases import observed

OBSERVATIONS = Path(__file__).resolve().parent.parent / "lab" / "observations"
CELLS = ("acc1.6-tf4.57-ao", "acc1.11-tf4.57-ao", "acc1.16-tf5.25-ao")
SETUPS: dict[str, tuple[list[str], list[dict[str, Any]]]] = {
    "script": (["python", "train.py"], []),
    "venv script": (["/v/bin/python", "-u", "train.py", "--lr", "1"], []),
    "launch with bf16": (["accelerate", "launch", "--mixed_precision", "bf16", "train.py"], []),
    "Trainer with bf16": (["python", "train.py"], [cfg("training_args", {"bf16": True, "fp16": False})]),
    "TRL config": (["python", "train.py"], [cfg("trl", {"learning_rate": 1e-5, "beta": 0.1})]),
    "TRL config, accelerate launch": (["accelerate", "launch", "train.py"], [cfg("trl", {"bf16": True})]),
    "LLaMA-Factory": (["llamafactory-cli", "train", "llamafactory.yaml"], [cfg("llamafactory", LF_REFERENCE)]),
    "LLaMA-Factory without fp8 keys": (["/v/bin/llamafactory-cli", "train", "my.yaml"], [cfg("llamafactory", {
        k: v for k, v in LF_REFERENCE.items() if not k.startswith("fp8")}, "my.yaml")]),
}


def _packages(cell: str) -> dict[str, Any]:
    versions = json.loads((OBSERVATIONS / f"{cell}.json").read_text())["versions"]
    return {"accelerate": versions["accelerate"], "transformers": versions["transformers"],
            "torchao": versions["torchao"], "llamafactory": "0.9.5"}


def _applied(fix: Fix, packages: dict[str, Any], configs: list[dict[str, Any]]) -> tuple[Stack, Any]:
    """The stack and the engine's setup after the user did what the fix prints."""
    packages = dict(packages)
    if any(line.startswith("pip install 'accelerate>=") for line in fix.install):
        minimum = fix.install[0].split(">=")[1].rstrip("'")
        packages["accelerate"] = next(v for v in observed()["accelerate"] if v.startswith(minimum + "."))
    edited = [cfg(c["kind"], {**c["data"], **fix.edits.get(c["path"], {})}, c["path"]) for c in configs]
    edited += [cfg("accelerate", f.data, f.path) for f in fix.files if f.path == ACCELERATE_YAML]
    launched = "--config_file" in fix.command
    facts = make_facts(packages=packages, env=fix.env, configs=edited)
    return Stack.of(packages), read_intent(facts).setup(launched=launched)


@pytest.mark.parametrize("cell", CELLS)
def test_every_printed_torchao_fix_makes_fp8_active(cell: str) -> None:
    packages = _packages(cell)
    for name, (command, configs) in SETUPS.items():
        facts = {**make_facts(packages=packages, configs=configs), "command": command}
        before = predict(Stack.of(packages), read_intent(facts).setup(launched=command[0] == "accelerate"))
        assert not (before["outcome"] == "ok" and before["fp8"]), (name, before)
        fixes = fixes_for(facts, "AO")
        assert fixes, name
        for fix in fixes:
            stack, setup = _applied(fix, packages, configs)
            got = predict(stack, setup)
            assert got["outcome"] == "ok" and got["fp8"] is True, (cell, name, fix.key, got)
            assert got["reaches"] == "fp8"
            upgraded = any(line.startswith("pip install 'accelerate>=") for line in fix.install)
            assert upgraded is (packages["accelerate"] == "1.6.0"), (cell, name, fix.key)


def test_the_upgrade_is_to_the_first_release_where_env_fp8_trains() -> None:
    assert accelerate_min() == "1.9"  # 1.8 builds the torchao recipe and then raises (acc1.8 cell)
    setups = [*SETUPS.values(), (["trl", "sft", "--config", "c.yaml"], [cfg("trl", {"bf16": True}, "c.yaml")])]
    for command, configs in setups:
        facts = {**make_facts(packages=_packages("acc1.6-tf4.57-ao"), configs=configs), "command": command}
        for fix in fixes_for(facts, "AO"):
            assert fix.install == (upgrade_line(),) == ("pip install 'accelerate>=1.9'",), (command, fix.key)


def test_every_printed_te_fix_makes_accelerate_take_te() -> None:
    # the lab has no Transformer Engine: Accelerate going for TE raises that it is not available (acc1.16 cell,
    # ACCELERATE_FP8_BACKEND=TE), LLaMA-Factory with fp8_backend te fails importing it (lf0.9.5 cells); torchao, also
    # installed, would have trained
    packages = _packages("acc1.16-tf5.25-ao")
    for name, (command, configs) in SETUPS.items():
        facts = {**make_facts(packages=packages, configs=configs), "command": command}
        for fix in fixes_for(facts, "TE"):
            stack, setup = _applied(fix, packages, configs)
            got = predict(stack, setup)
            assert got["outcome"] == "raised" and got["message"] in (TE_MISSING_NEW, TE_MODULE_MISSING), (name, got)
            assert fix.note == TE_UNPROVEN and not fix.proven_on_cpu
