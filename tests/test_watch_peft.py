"""`fp8doctor watch` on a real tiny PEFT LoRA run over torchao FP8, in the lab's PEFT 0.21 cell (accelerate 1.15,
transformers 5.24, torchao 0.18): the tiny Llama and LoRA targets of lab/probes/peft_fp8.py, get_peft_model, then
Accelerator(mixed_precision='fp8') and prepare (as a Trainer does), two optimizer steps. The verdict must name
PEFT, and its count of FP8 layers by role must be what the lab recorded (lab/observations/peft0.21-tf5.24-ao.json:
the model's first Linear, layer 0's q_proj base layer, stays Linear; adapters become Float8Linear only at a rank
that is a multiple of 16) and what fp8doctor.knowledge.frontends.predict_peft says. Where the adapters do not
train (rank 16: they leave the optimizer in prepare), watch says fp8-not-trained and its printed fix is run as
printed and watched again: the adapters stay FP8 and now train.

Needs the cell: runs with FP8DOCTOR_LIVE_LAB_PEFT=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lab_cells import cell_python

from fp8doctor.knowledge.frontends import predict_peft
from fp8doctor.verdicts import FP8_ACTIVE, FP8_NOT_TRAINED

ROOT = Path(__file__).resolve().parents[1]
CELL = "peft0.21-tf5.24-ao"
OBSERVED = ROOT / "lab" / "observations" / f"{CELL}.json"

pytestmark = [
    pytest.mark.live_lab,
    pytest.mark.skipif(os.environ.get("FP8DOCTOR_LIVE_LAB_PEFT") != "1",
                       reason="the PEFT watch runs with FP8DOCTOR_LIVE_LAB_PEFT=1 (builds the PEFT lab cell)"),
]

SCRIPT = f"""
import sys
import torch
sys.path.insert(0, {str(ROOT / "lab" / "probes")!r})
from peft_fp8 import TARGETS, _model
from accelerate import Accelerator
from peft import LoraConfig, get_peft_model

model = get_peft_model(_model(), LoraConfig(r=int(sys.argv[1]), lora_alpha=16, target_modules=TARGETS,
                                            lora_dropout=0.0))
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
accelerator = Accelerator(mixed_precision="fp8")
model, optimizer = accelerator.prepare(model, optimizer)
ids = torch.randint(0, 320, (4, 32), generator=torch.Generator().manual_seed(0))
for _ in range(2):
    loss = model(input_ids=ids, labels=ids).loss
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
"""


@pytest.fixture(scope="module")
def cell() -> str:
    return str(cell_python(CELL))


def _observed(r: int) -> dict[str, Any]:
    rec = json.loads(OBSERVED.read_text())
    [case] = [c for c in rec["probes"]["peft_fp8"] if c["inputs"]["order"] == "peft_then_prepare"
              and c["inputs"]["r"] == r and not c["inputs"]["env"]]
    return case


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_", "HF_", "PYTHON"))}
    return {**env, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}


def _watch(cmd: list[str], cwd: Path) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "watch", "--format", "json", "--", *cmd],
                       capture_output=True, text=True, cwd=cwd, env=_env(), timeout=600)
    assert p.stdout.startswith("{"), p.stderr[-3000:]
    return json.loads(p.stdout)


@pytest.mark.parametrize("r", [8, 16])  # adapters stay fp32 Linear / become Float8Linear
def test_watch_names_peft_and_counts_its_fp8_layers(cell: str, r: int, tmp_path: Path) -> None:
    (tmp_path / "lora.py").write_text(SCRIPT)
    env = _env()
    result = _watch([cell, "lora.py", str(r)], tmp_path)
    assert result["exit_code"] == 0, result.get("reason")
    assert result["frontend"] == "PEFT" and result["versions"]["peft"] == "0.21.2", result.get("frontend")
    peft = result["peft"]
    observed = _observed(r)
    predicted = predict_peft(result["versions"], order="peft_then_prepare", r=r)
    layer0 = [observed["layers"][t] for t in ("q_proj", "v_proj", "down_proj")]
    assert peft["fp8_layers"] == observed["layers"]["float8_linear"], (peft, observed["layers"])
    # layer 0's base layers as observed (q_proj, the model's first Linear, skipped), layer 1's three all FP8
    assert peft["base_layers_fp8"] == sum(x["base_layer"] == "Float8Linear" for x in layer0) + 3
    assert predicted["first_linear_fp8"] is False and peft["base_layers_fp8"] == 5
    adapters_fp8 = all(x["lora_A"] == x["lora_B"] == "Float8Linear" for x in layer0)
    assert adapters_fp8 is predicted["adapters_fp8"] and peft["adapters_fp8"] == (12 if adapters_fp8 else 0)
    text = subprocess.run([sys.executable, "-m", "fp8doctor", "watch", "--", cell, "lora.py", str(r)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600).stdout
    assert "frontend: PEFT 0.21.2" in text and f"PEFT LoRA (PeftModel): {peft['fp8_layers']} FP8" in text
    assert (observed["changed"] == 0) is (predicted["adapters_train"] is False) is adapters_fp8
    assert result["verdict"] == (FP8_ACTIVE if predicted["adapters_train"] else FP8_NOT_TRAINED), result["reason"]
    assert (f"verdict: {FP8_NOT_TRAINED}" in text) is adapters_fp8


def test_printed_fix_makes_fp8_adapters_train(cell: str, tmp_path: Path) -> None:
    (tmp_path / "lora.py").write_text(SCRIPT)
    before = _watch([cell, "lora.py", "16"], tmp_path)
    assert before["verdict"] == FP8_NOT_TRAINED and before["peft"]["adapters_fp8"] == 12, before["reason"]
    (tmp_path / "fix.sh").write_text("\n".join(before["fix"]) + "\n")
    assert before["fix"][-1] == f"{cell} lora.py 16"  # the command as it was run
    after = _watch(["bash", "fix.sh"], tmp_path)
    assert after["verdict"] == FP8_ACTIVE and after["peft"]["adapters_fp8"] == 12, after["reason"]
    [rank] = after["ranks"]
    assert rank["model"]["outside_optimizer"]["count"] == 0
