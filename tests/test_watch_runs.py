"""`fp8doctor watch` on real training commands (tiny Llama, CPU, torchao emulated FP8).

Each run costs seconds, so each one happens once per test session: results are cached in the session's shared
temp dir under a file lock, so pytest-xdist workers share them instead of repeating them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from session_cache import computed_once

SCRIPTS = Path(__file__).parent / "watch_scripts"
BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 300


def _base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "FP8DOCTOR_")) and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1", PYTHONHASHSEED="0", **extra)
    return env


def _shared_run(factory: pytest.TempPathFactory, name: str, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    def compute() -> dict[str, Any]:
        r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=SCRIPTS, timeout=RUN_TIMEOUT_S)
        return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}

    return computed_once(factory, f"watch-run-{name}", compute)


def _watched(factory, name: str, cmd: list[str], **env: str) -> dict[str, Any]:
    run = _shared_run(factory, name, [sys.executable, "-m", "fp8doctor", "watch", "--format", "json", "--", *cmd],
                      _base_env(**env))
    assert run["stdout"].startswith("{"), run["stderr"][-3000:]
    run["result"] = json.loads(run["stdout"])
    return run


def _losses(text: str) -> list[str]:
    return re.findall(r"^(?:LOSS|PARAMSUM) .*$", text, flags=re.M)


@pytest.fixture(scope="module")
def buggy(tmp_path_factory):
    return _watched(tmp_path_factory, "buggy", [sys.executable, "trainer_script.py", "buggy"],
                    ACCELERATE_MIXED_PRECISION="fp8")


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    return _watched(tmp_path_factory, "fixed", [sys.executable, "trainer_script.py", "fixed"],
                    ACCELERATE_MIXED_PRECISION="fp8")


@pytest.fixture(scope="module")
def fixed_unwatched(tmp_path_factory):
    return _shared_run(tmp_path_factory, "fixed-unwatched", [sys.executable, "trainer_script.py", "fixed"],
                       _base_env(ACCELERATE_MIXED_PRECISION="fp8"))


def test_bf16_trainer_args_silently_win(buggy):
    result = buggy["result"]
    assert buggy["rc"] == 1, buggy["stderr"][-2000:]
    assert result["exit_code"] == 0 and result["verdict"] == "silent-bf16"
    assert result["winner"] == "TrainingArguments(bf16=True)"
    assert result["reason"] == ("TrainingArguments(bf16=True) passed mixed_precision='bf16' to Accelerator "
                                "although ACCELERATE_MIXED_PRECISION=fp8")
    (rank,) = result["ranks"]
    assert rank["accelerator"]["result"]["mixed_precision"] == "bf16"
    assert rank["model"]["fp8_layers"] == 0 and rank["model"]["eligible"] == 13
    assert "#   bf16: false" in result["fix"]
    (proc,) = result["processes"]
    trainer_losses = [x for x in proc["losses"] if x["source"] == "trainer.log" and "loss" in x["values"]]
    assert len(trainer_losses) == 5


def test_fixed_trainer_is_fp8_active_with_layer_count(fixed):
    result = fixed["result"]
    assert fixed["rc"] == 0, fixed["stderr"][-2000:]
    assert result["verdict"] == "fp8-active", result["reason"]
    (rank,) = result["ranks"]
    assert rank["accelerator"]["result"]["fp8_enabled"] is True
    assert rank["accelerator"]["result"]["fp8_backend"] == "AO"
    assert rank["accelerator"]["fp8_handlers"] == ["AORecipeKwargs"]
    assert (rank["model"]["fp8_layers"], rank["model"]["eligible"]) == (13, 13)
    assert rank["model"]["fp8_module_forwards"] == 13 * rank["model"]["forwards_seen"] > 0
    assert result["reason"].startswith("13 FP8 layers of 13 eligible Linear (accelerate-ao rule)")
    assert result["fix"] == []


def test_watch_does_not_change_the_losses(fixed, fixed_unwatched):
    assert fixed_unwatched["rc"] == 0, fixed_unwatched["stderr"][-2000:]
    plain = _losses(fixed_unwatched["stdout"])
    watched = _losses(fixed["stderr"])  # --format json sends the command's stdout to stderr
    assert len(plain) == 6  # 5 steps + the parameter checksum
    assert watched == plain


def test_reference_patch_raises_value_error(tmp_path_factory):
    run = _watched(tmp_path_factory, "patch", [sys.executable, "trainer_script.py", "patch"],
                   ACCELERATE_MIXED_PRECISION="fp8")
    result = run["result"]
    assert run["rc"] == 1 and result["exit_code"] == 1  # the command's own failure comes first
    assert result["verdict"] == "raised"
    assert result["error"] == {"type": "ValueError",
                               "message": "Passing in an FP8 configuration requires setting `mixed_precision='fp8'`."}
    assert "AORecipeKwargs reached an Accelerator whose mixed precision was 'bf16'" in result["reason"]
    assert "ValueError: Passing in an FP8 configuration" in run["stderr"]  # the command's traceback still streams


def test_accelerate_launch(tmp_path_factory):
    run = _watched(tmp_path_factory, "launch", ["accelerate", "launch", "--cpu", "--num_processes", "1",
                                                "--mixed_precision", "fp8", "accelerate_script.py"])
    result = run["result"]
    assert run["rc"] == 0, run["stderr"][-2000:]
    assert result["verdict"] == "fp8-active", result["reason"]
    (rank,) = result["ranks"]
    assert rank["accelerator"]["env"]["ACCELERATE_MIXED_PRECISION"] == "fp8"
    assert rank["accelerator"]["arg_mixed_precision"] is None
    assert rank["model"]["fp8_layers"] == 13
    assert any("accelerate" in Path(h["argv"][0]).name for h in result["helpers"])  # the launcher itself
    losses = [x for p in result["processes"] for x in p["losses"] if x["source"] == "accelerator.backward"]
    assert len(losses) == 4


def test_two_process_torchrun_reports_both_ranks(tmp_path_factory):
    run = _watched(tmp_path_factory, "torchrun", ["torchrun", "--nproc_per_node", "2", "accelerate_script.py"],
                   ACCELERATE_USE_CPU="true", ACCELERATE_MIXED_PRECISION="fp8")
    result = run["result"]
    assert run["rc"] == 0, run["stderr"][-2000:]
    assert [r["rank"] for r in result["ranks"]] == [0, 1]
    for rank in result["ranks"]:
        assert rank["verdict"] == "fp8-active", rank["reason"]
        assert rank["accelerator"]["result"]["distributed_type"] == "MULTI_CPU"
        assert rank["accelerator"]["result"]["num_processes"] == 2
        assert rank["model"]["fp8_layers"] == 13
    assert result["verdict"] == "fp8-active"


def test_fsdp2_ranks_count_fp8_layers_inside_the_plugins_units(tmp_path_factory):
    run = _watched(tmp_path_factory, "fsdp2", ["torchrun", "--nproc_per_node", "2", "fsdp2_script.py"],
                   ACCELERATE_USE_CPU="true")
    result = run["result"]
    assert run["rc"] == 0, run["stderr"][-2000:]
    assert [r["rank"] for r in result["ranks"]] == [0, 1]
    for rank in result["ranks"]:
        assert rank["verdict"] == "fp8-active", rank["reason"]
        wrapper = rank["model"]["wrapper"]
        assert wrapper["plugin"] == "fsdp2" and wrapper["float8_all_gather"] is True
        assert len(wrapper["fp8_layers_wrapped"]) == rank["model"]["fp8_layers"] == 13
        assert "all inside fsdp2 units, float8 all-gather" in rank["reason"]
    assert result["verdict"] == "fp8-active"
