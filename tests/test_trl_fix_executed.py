"""TRL, watched and fixed for real in the lab's TRL 1.16 cell (transformers 5.24, accelerate 1.15, torchao): a tiny
Llama and tokenizer built locally (lab/probes/trl_configs.py), nothing downloaded.

For the two forms users train TRL with, an SFT script run by the cell's interpreter given by its absolute path and
the `trl sft` console entry point, with ACCELERATE_MIXED_PRECISION=fp8 exported (what a user who read Accelerate's
docs does): `fp8doctor watch` must see bf16 train, name TRL in its verdict, and print TRL's fix for that command;
the fix, written out as printed and run with bash (the SFTConfig edit applied to the script, as it says), must train
with FP8 layers active.

Slow (real TRL trainings on CPU) and needs the cell: runs with FP8DOCTOR_LIVE_LAB_TRL=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lab_cells import cell_with_assets, offline_env

from fp8doctor.knowledge.fixes import LAUNCH_ALL_GATHER, Fix, fixes_for, render, render_all

CELL = "trl1.16-tf5.24-ao"
TIMEOUT_S = 900

pytestmark = [
    pytest.mark.live_lab,
    pytest.mark.skipif(os.environ.get("FP8DOCTOR_LIVE_LAB_TRL") != "1",
                       reason="the TRL fixes run with FP8DOCTOR_LIVE_LAB_TRL=1 (slow; builds the TRL lab cell)"),
]

ASSETS = """
import json, sys
from pathlib import Path
sys.path.insert(0, "lab/probes")
from trl_configs import _tiny
root = Path(sys.argv[1])
model, tok = _tiny(root)
model.save_pretrained(root / "model")
tok.save_pretrained(root / "model")
(root / "data").mkdir()
rows = [json.dumps({"text": f"hello world {i} the quick brown fox"}) for i in range(16)]
(root / "data" / "train.jsonl").write_text("\\n".join(rows) + "\\n")
"""

SCRIPT = """
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

args = SFTConfig(output_dir="out", max_steps=2, per_device_train_batch_size=8, report_to="none", use_cpu=True,
                 save_strategy="no")
model = AutoModelForCausalLM.from_pretrained("model")
trainer = SFTTrainer(model=model, args=args, train_dataset=load_dataset("data", split="train"),
                     processing_class=AutoTokenizer.from_pretrained("model"))
trainer.train()
"""
CLI_ARGS = ["--model_name_or_path", "model", "--dataset_name", "data", "--output_dir", "out", "--max_steps", "2",
            "--per_device_train_batch_size", "8", "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no"]


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return cell_with_assets(CELL, ASSETS, tmp_path_factory.mktemp("trl"))


def _env(cell: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
    return offline_env(cell, extra)


def _watch(cell: dict[str, Any], cmd: list[str], extra: dict[str, str]) -> dict[str, Any]:
    cwd = cell["root"]
    subprocess.run(["rm", "-rf", str(cwd / "out")], check=True)
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "watch", "--format", "json", "--", *cmd],
                       capture_output=True, text=True, cwd=cwd, env=_env(cell, extra), timeout=TIMEOUT_S)
    assert p.stdout.startswith("{"), p.stderr[-3000:]
    return json.loads(p.stdout)


def _printed(result: dict[str, Any]) -> Fix:
    facts = {"packages": result["versions"], "command": result["command"], "configs": [],
             "frontend": result["frontend"], "environ": {"accelerate_fp8": {}}}
    [fix] = fixes_for(facts, "AO")
    assert result["fix"] == render_all([fix]).splitlines()
    return fix


def _fp8_layers(result: dict[str, Any]) -> int:
    return max((r.get("model") or {}).get("fp8_layers", 0) for r in result["ranks"])


def test_trl_script_by_venv_interpreter(cell: dict[str, Any]) -> None:
    (cell["root"] / "sft.py").write_text(SCRIPT)
    control = _watch(cell, [cell["python"], "sft.py"], {"ACCELERATE_MIXED_PRECISION": "fp8"})
    assert control["verdict"] == "silent-bf16" and control["frontend"] == "TRL", control["reason"]
    assert "TRL SFTConfig(bf16=True)" in control["reason"] and "bf16=False" in control["reason"]
    fix = _printed(control)
    assert fix.key == "trl" and fix.command == (cell["python"], "sft.py")
    (cell["root"] / "sft.py").write_text(SCRIPT.replace("SFTConfig(", "SFTConfig(bf16=False, "))  # the edit
    (cell["root"] / "fix.sh").write_text("\n".join(render(fix)) + "\n")
    fixed = _watch(cell, ["bash", "fix.sh"], {})
    assert fixed["verdict"] == "fp8-active" and _fp8_layers(fixed) > 0, (fixed["reason"], fixed.get("error"))


def test_trl_cli_entry_point(cell: dict[str, Any]) -> None:
    trl = str(Path(cell["bin"]) / "trl")
    control = _watch(cell, [trl, "sft", *CLI_ARGS], {"ACCELERATE_MIXED_PRECISION": "fp8"})
    assert control["verdict"] == "silent-bf16" and control["frontend"] == "TRL", control["reason"]
    assert "launcher" in control["reason"] and "'no'" in control["reason"]
    fix = _printed(control)
    assert fix.command[:2] == (trl, "sft") and fix.command[-4:] == ("--mixed_precision", "fp8", *LAUNCH_ALL_GATHER)
    (cell["root"] / "fix.sh").write_text("\n".join(render(fix)) + "\n")
    fixed = _watch(cell, ["bash", "fix.sh"], {})
    assert fixed["verdict"] == "fp8-active" and _fp8_layers(fixed) > 0, (fixed["reason"], fixed.get("error"))


def test_trl_yaml_fix_printed_by_env(cell: dict[str, Any]) -> None:
    """`fp8doctor env --python CELL --config sft.yaml` with fp8 exported: TRL's YAML is linted (bf16 unset in TRL
    1.16 means bf16), and the printed fix (bf16: false in the YAML, `trl sft --config ... --mixed_precision fp8`)
    trains FP8 when run as printed."""
    import yaml

    keys = dict(zip(CLI_ARGS[::2], CLI_ARGS[1::2], strict=True))
    path = cell["root"] / "sft.yaml"
    path.write_text(yaml.safe_dump({k.removeprefix("--"): v for k, v in keys.items()}))
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "env", "--python", cell["python"], "--config", str(path),
                        "--format", "json"], capture_output=True, text=True, cwd=cell["root"],
                       env=_env(cell, {"ACCELERATE_MIXED_PRECISION": "fp8"}), timeout=TIMEOUT_S)
    out = json.loads(p.stdout)
    [lint] = [f for f in out["findings"] if f["id"] == "lint.trl-bf16"]
    assert lint["level"] == "fail" and "TRL 1.16.0" in lint["title"], lint
    [fix] = fixes_for(out["facts"], "AO")
    assert lint["fix"] == render_all([fix]) and fix.command == ("trl", "sft", "--config", str(path),
                                                                "--mixed_precision", "fp8", *LAUNCH_ALL_GATHER)
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **fix.edits[str(path)]}))  # the edit
    (cell["root"] / "fix.sh").write_text("\n".join(render(fix)) + "\n")
    fixed = _watch(cell, ["bash", "fix.sh"], {})
    assert fixed["verdict"] == "fp8-active" and _fp8_layers(fixed) > 0, (fixed["reason"], fixed.get("error"))
