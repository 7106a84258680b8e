"""`fp8doctor watch` sees FP8 weights that never train, in a real run: a plain Accelerate loop (optimizer built
before `prepare`, no recipe) with ACCELERATE_MIXED_PRECISION=fp8 on the installed accelerate and torchao. The verdict
must agree with the engine's prediction for the same start (knowledge/optimizer_params), and the fix watch prints
is executed as printed (bash, in the scripts' directory) and watched again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from session_cache import computed_once

from fp8doctor.knowledge.engine import Setup, Stack
from fp8doctor.knowledge.optimizer_params import predict_optimizer
from fp8doctor.verdicts import FP8_ACTIVE, FP8_NOT_TRAINED

SCRIPTS = Path(__file__).parent / "watch_scripts"
BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 300
ENV = {"ACCELERATE_MIXED_PRECISION": "fp8"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "HF_HUB_OFFLINE": "1", **ENV}


def _watch(cmd: list[str]) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-m", "fp8doctor", "watch", "--format", "json", "--", *cmd],
                       capture_output=True, text=True, env=_env(), cwd=SCRIPTS, timeout=RUN_TIMEOUT_S)
    assert r.stdout.startswith("{"), r.stderr[-3000:]
    return {"rc": r.returncode, **json.loads(r.stdout)}


def _installed() -> Stack:
    return Stack.of({name: metadata.version(name) for name in ("accelerate", "torchao", "torch", "transformers")})


@pytest.fixture(scope="module")
def unfixed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return computed_once(tmp_path_factory, "watch-not-trained",
                         lambda: _watch([sys.executable, "plain_accelerate.py"]))


def test_watch_verdict_is_the_engines_prediction(unfixed: dict[str, Any]) -> None:
    predicted = predict_optimizer(_installed(), Setup(env=ENV))
    assert predicted["outcome"] == "ok", predicted
    (rank,) = unfixed["ranks"]
    outside = rank["model"]["outside_optimizer"]
    if predicted["weights_outside_optimizer"]:
        assert unfixed["verdict"] == FP8_NOT_TRAINED and unfixed["rc"] == 1, unfixed["reason"]
        assert outside["fp8_weights"] == rank["model"]["fp8_layers"] == 13
        assert "optimizer does not hold 13 FP8 layers' weights" in unfixed["reason"]
    else:
        assert unfixed["verdict"] == FP8_ACTIVE and outside["fp8_weights"] == 0, unfixed["reason"]


def test_printed_fix_runs_and_the_weights_train(unfixed: dict[str, Any], tmp_path: Path) -> None:
    if unfixed["verdict"] != FP8_NOT_TRAINED:
        pytest.skip(f"the installed accelerate keeps the FP8 weights in the optimizer ({unfixed['reason']})")
    fix = unfixed["fix"]
    assert fix[-2:] == ["export ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER=false",
                        f"{sys.executable} plain_accelerate.py"], fix
    script = tmp_path / "fix.sh"
    script.write_text("\n".join(fix) + "\n")
    after = _watch(["bash", str(script)])
    assert after["verdict"] == FP8_ACTIVE and after["rc"] == 0, after["reason"]
    (rank,) = after["ranks"]
    assert rank["model"]["outside_optimizer"] == {"count": 0, "fp8_weights": 0, "names": []}


def test_own_config_with_all_gather_gets_a_script_edit_not_a_variable(tmp_path: Path) -> None:
    """A script passing its own Float8LinearConfig(enable_fsdp_float8_all_gather=True): no variable reaches that
    config, so the fix names the script's own flag; with the flag False the same script trains."""
    on = _watch([sys.executable, "own_ao_config.py", "true"])
    assert on["verdict"] == FP8_NOT_TRAINED and on["rc"] == 1, on["reason"]
    assert on["ranks"][0]["ao_config"] == {"all_gather": True, "user_config": True}
    assert not any(line.startswith("export ") for line in on["fix"]), on["fix"]
    assert "Float8LinearConfig(enable_fsdp_float8_all_gather=False)" in "\n".join(on["fix"])
    off = _watch([sys.executable, "own_ao_config.py", "false"])
    assert off["verdict"] == FP8_ACTIVE and off["rc"] == 0, off["reason"]


def test_default_recipe_handler_gets_the_variable(tmp_path: Path) -> None:
    """AORecipeKwargs() with no config: the installed accelerate builds the config, reading the variable."""
    predicted = predict_optimizer(_installed(), Setup(handler="AORecipeKwargs", mp_arg="fp8"))
    run = _watch([sys.executable, "own_ao_config.py", "none"])
    assert run["ranks"][0]["ao_config"]["user_config"] is False
    if not predicted["weights_outside_optimizer"]:
        assert run["verdict"] == FP8_ACTIVE, run["reason"]
        return
    assert run["verdict"] == FP8_NOT_TRAINED and "Accelerate's torchao config" in run["reason"], run["reason"]
    script = tmp_path / "fix.sh"
    script.write_text("\n".join(run["fix"]) + "\n")
    assert run["fix"][-2] == "export ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER=false", run["fix"]
    after = _watch(["bash", str(script)])
    assert after["verdict"] == FP8_ACTIVE, after["reason"]


def test_accelerate_launch_gets_the_launch_option(tmp_path: Path) -> None:
    """`accelerate launch --mixed_precision fp8` exports the all-gather flag from its own option (default true on
    1.13+) over the shell's variable: the printed fix is that option, and it runs."""
    cmd = [str(BIN / "accelerate"), "launch", "--num_processes", "1", "--mixed_precision", "fp8",
           "plain_accelerate.py"]
    run = _watch(cmd)
    predicted = predict_optimizer(_installed(), Setup(env=ENV))
    if not predicted["weights_outside_optimizer"]:
        pytest.skip("the installed accelerate keeps the FP8 weights in the optimizer")
    assert run["verdict"] == FP8_NOT_TRAINED, run["reason"]
    assert run["fix"][-1] == " ".join([*cmd[:-1], "--fp8_enable_fsdp_float8_all_gather", "false", cmd[-1]])
    script = tmp_path / "fix.sh"
    script.write_text("\n".join(run["fix"]) + "\n")
    after = _watch(["bash", str(script)])
    assert after["verdict"] == FP8_ACTIVE, after["reason"]
