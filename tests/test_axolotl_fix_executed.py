"""axolotl, linted and fixed for real in the lab's axolotl 0.19 cell (transformers 5.16, accelerate 1.13, torchao
0.17): a tiny Llama and a local dataset built by lab/probes/axolotl_config.py, nothing downloaded.

With ACCELERATE_MIXED_PRECISION=fp8 exported and an axolotl config without `fp8` (what a user who read
Accelerate's docs does; axolotl replaces the variable with bf16, lab/observations/axolotl0.19-ao.json),
`fp8doctor env --python CELL` must warn that axolotl is installed and name its field, `env --config` must fail the
config and print axolotl's fix; the fix, rendered for each form users start axolotl with (its console entry point,
`python -m axolotl.cli.train`, `accelerate launch -m axolotl.cli.train`), is written out as printed and run with
bash under `fp8doctor watch`. On this CPU machine the fixed run must reach axolotl's own FP8 handling: its
validation refuses fp8 without a GPU of compute capability 9.0+ with the message the lab observed
(AXOLOTL_NO_FP8_GPU), and watch's verdict must name axolotl, quote that refusal and print axolotl's fix for the
command that started it; on an FP8 GPU the same key trains in FP8 (not executable here).

Slow (axolotl imports for about a minute per run on CPU) and needs the cell: runs with FP8DOCTOR_LIVE_LAB_AXOLOTL=1.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from lab_cells import cell_with_assets, offline_env

from fp8doctor.knowledge.fixes import fixes_for, render, render_all
from fp8doctor.knowledge.frontends import AXOLOTL_NO_FP8_GPU
from fp8doctor.verdicts import NO_ACCELERATOR

CELL = "axolotl0.19-ao"
TIMEOUT_S = 600

pytestmark = [
    pytest.mark.live_lab,
    pytest.mark.skipif(os.environ.get("FP8DOCTOR_LIVE_LAB_AXOLOTL") != "1",
                       reason="the axolotl fixes run with FP8DOCTOR_LIVE_LAB_AXOLOTL=1 (slow; builds the axolotl "
                              "lab cell)"),
]

ASSETS = """
import os, sys, yaml
from pathlib import Path
sys.path.insert(0, "lab/probes")
from axolotl_config import _assets
root = Path(sys.argv[1])
cfg = {**_assets(root), "bf16": True}
(root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
"""


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return cell_with_assets(CELL, ASSETS, tmp_path_factory.mktemp("axolotl"))


def _env(cell: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
    return offline_env(cell, {"AXOLOTL_DO_NOT_TRACK": "1", **extra})


def _doctor_env(cell: dict[str, Any], *args: str) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "env", "--python", cell["python"], *args, "--format",
                        "json"], capture_output=True, text=True, cwd=cell["root"],
                       env=_env(cell, {"ACCELERATE_MIXED_PRECISION": "fp8"}), timeout=TIMEOUT_S)
    assert p.stdout.startswith("{"), p.stderr[-3000:]
    return json.loads(p.stdout)


def test_env_warns_that_axolotl_sets_its_own_precision(cell: dict[str, Any]) -> None:
    out = _doctor_env(cell)
    [f] = [f for f in out["findings"] if f["id"] == "frontend.axolotl"]
    assert f["level"] == "warn" and "axolotl 0.19.0" in f["title"] and "`fp8: true`" in f["detail"], f
    assert "#   fp8: true" in f["fix"]


@pytest.fixture(scope="module")
def linted(cell: dict[str, Any]) -> dict[str, Any]:
    path = cell["root"] / "cfg.yaml"
    out = _doctor_env(cell, "--config", str(path))
    [lint] = [f for f in out["findings"] if f["id"] == "lint.axolotl-fp8"]
    assert lint["level"] == "fail" and "ACCELERATE_MIXED_PRECISION=bf16" in lint["title"], lint
    [fix] = fixes_for(out["facts"], "AO")
    assert lint["fix"] == render_all([fix]) and fix.command == ("axolotl", "train", str(path))
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **fix.edits[str(path)]}))  # the edit
    return out["facts"]


@pytest.mark.parametrize("form", ["entry", "python -m", "accelerate launch -m"])
def test_printed_fix_reaches_axolotls_fp8_handling(cell: dict[str, Any], linted: dict[str, Any], form: str) -> None:
    cfg = str(cell["root"] / "cfg.yaml")
    module = ["-m", "axolotl.cli.train", cfg]
    cmd = {"entry": [str(Path(cell["bin"]) / "axolotl"), "train", cfg], "python -m": [cell["python"], *module],
           "accelerate launch -m": ["accelerate", "launch", "--num_processes", "1", *module]}[form]
    [fix] = fixes_for({**linted, "command": cmd}, "AO")
    assert fix.key == "axolotl" and fix.command == tuple(cmd) and fix.edits == {cfg: {"fp8": True}}
    (cell["root"] / "fix.sh").write_text("\n".join(render(fix)) + "\n")
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "watch", "--format", "json", "--", "bash", "fix.sh"],
                       capture_output=True, text=True, cwd=cell["root"],
                       env=_env(cell, {"ACCELERATE_MIXED_PRECISION": "fp8"}), timeout=TIMEOUT_S)
    result = json.loads(p.stdout)
    assert result["exit_code"] != 0 and AXOLOTL_NO_FP8_GPU in p.stderr, p.stderr[-3000:]
    # the process that validated the config is axolotl's training module, shown as it was started
    assert any(proc["argv"][:3] == module for proc in result["processes"]), \
        [proc["argv"] for proc in result["processes"]]
    # watch's verdict names axolotl, quotes its refusal, and its fix is axolotl's, for the command that started it
    assert result["verdict"] == NO_ACCELERATOR and result["frontend"] == "axolotl", result["reason"]
    assert result["reason"].startswith("axolotl stopped the run before any Accelerator was built") and \
        AXOLOTL_NO_FP8_GPU in result["reason"], result["reason"]
    started = shlex.split(result["fix"][-1])
    [watch_fix] = fixes_for({"command": started}, "AO")
    assert watch_fix.key == "axolotl" and result["fix"] == render(watch_fix), result["fix"]
    assert watch_fix.edits == {cfg: {"fp8": True}} and started[1:] == cmd[1:] and \
        os.path.basename(started[0]) == os.path.basename(cmd[0]), started
