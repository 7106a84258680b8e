"""The LLaMA-Factory fix the doctor prints, executed in a lab LLaMA-Factory cell: the reference config (fp8: true,
torchao, bf16: true) first trains without FP8 there (transformers 5.x passes TrainingArguments' bf16 to the
Accelerator, as the doctor predicts), then is edited as the fix says, the fix script runs with bash exactly as
rendered, and the lab's observer (lab/probes/lf_site) must see FP8 layers after prepare and optimizer steps.

Slow (a cell with LLaMA-Factory, a real `llamafactory-cli train`): runs only with FP8DOCTOR_LIVE_LAB_LF=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from lab_cells import cell_python, probe_env

from fp8doctor.knowledge.fixes import fixes_for, render

ROOT = Path(__file__).resolve().parents[1]
LF_CELL = os.environ.get("FP8DOCTOR_LF_CELL", "lf0.9.5-tf5.6-ao")

pytestmark = [
    pytest.mark.live_lab,
    pytest.mark.skipif(os.environ.get("FP8DOCTOR_LIVE_LAB_LF") != "1",
                       reason="the LLaMA-Factory fix runs with FP8DOCTOR_LIVE_LAB_LF=1 (slow)"),
]

SETUP = """
import json, sys
from pathlib import Path
sys.path.insert(0, "lab/probes")
import llamafactory as lf
root = Path(sys.argv[1])
assets = lf.build_assets(root)
case = root / "case"
case.mkdir()
cfg = lf.lf_config(case, assets, {"fp8": True, "fp8_backend": "torchao", "bf16": True})
print("SETUP " + json.dumps({"config": str(cfg), "env": lf.child_env(root, {}, case / "obs.jsonl"),
                             "bin": str(lf.BIN)}))
"""
VERSION = "from importlib.metadata import version; print(version('accelerate'))"


def _train(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """Run, then read what the lab's observer saw (the observation file is per run)."""
    obs = Path(env["LAB_LF_OBS"])
    obs.unlink(missing_ok=True)
    shutil.rmtree(cwd / "out", ignore_errors=True)  # the previous run's output_dir (LLaMA-Factory refuses to reuse it)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
    events = [json.loads(ln) for ln in obs.read_text().splitlines()] if obs.exists() else []
    return {"rc": proc.returncode, "steps": sum(1 for e in events if e["event"] == "backward"),
            "layers": max((e.get("fp8_layers") or 0 for e in events if e["event"] == "prepare"), default=0),
            "tail": (proc.stdout + proc.stderr)[-2000:]}


def test_printed_llamafactory_fix_trains_fp8(tmp_path: Path) -> None:
    python = str(cell_python(LF_CELL))
    setup = subprocess.run([python, "-c", SETUP, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                           env=probe_env(), timeout=600)
    line = [ln for ln in setup.stdout.splitlines() if ln.startswith("SETUP ")]
    assert line, setup.stderr[-3000:]
    info = json.loads(line[0].removeprefix("SETUP "))
    cfg = Path(info["config"])
    accelerate = subprocess.run([python, "-c", VERSION], capture_output=True, text=True).stdout.strip()
    facts = {"packages": {"accelerate": accelerate}, "configs": [
        {"kind": "llamafactory", "path": str(cfg), "data": yaml.safe_load(cfg.read_text())}]}
    env = {**info["env"], "PATH": f"{info['bin']}{os.pathsep}{os.environ.get('PATH', '')}"}
    before = _train(["llamafactory-cli", "train", str(cfg)], cfg.parent, env)
    assert before["layers"] == 0, ("the reference config already trains FP8 in this cell", before)
    [fix] = fixes_for(facts, "AO")
    assert fix.key == "llamafactory" and fix.command == ("llamafactory-cli", "train", str(cfg))
    data = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**data, **fix.edits[str(cfg)]}, sort_keys=False))
    script = cfg.parent / "fix.sh"
    script.write_text("\n".join(render(fix)) + "\n")
    after = _train(["bash", str(script)], cfg.parent, env)
    assert after["rc"] == 0 and after["layers"] > 0 and after["steps"] >= 2, after
