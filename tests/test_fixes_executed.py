"""Every fix the doctor prints is executed: rendered exactly as `fp8doctor env` prints it, written to disk, run with
bash in a fresh directory, and watched by `fp8doctor watch`, which must see FP8 active (torchao on CPU).

The user's script is the plainest one: `Accelerator()` with no argument and no recipe, as a script that leaves
precision to the launcher has it. Without the fix the same script trains without FP8 (the control case).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fp8doctor.knowledge.fixes import TE_INSTALL, TE_UNPROVEN, Fix, fixes_for, llamafactory_fix, render, render_all
from fp8doctor.knowledge.generations import intended_backend

BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 400

TRAIN = '''
import torch
from accelerate import Accelerator

accelerator = Accelerator()
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(6)])
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
model, optimizer = accelerator.prepare(model, optimizer)
for step in range(3):
    loss = model(torch.randn(16, 64)).pow(2).mean()
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    print("LOSS", step, loss.item(), flush=True)
'''

TRAIN_TRAINER = '''
import torch
import yaml
from transformers import Trainer, TrainingArguments


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(6)])

    def forward(self, x, labels=None):
        out = self.net(x)
        return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}


g = torch.Generator().manual_seed(0)
data = [{"x": torch.randn(64, generator=g), "labels": torch.randn(64, generator=g)} for _ in range(16)]
cfg = yaml.safe_load(open("args.yaml"))
args = TrainingArguments(output_dir="out", report_to="none", max_steps=2, per_device_train_batch_size=4,
                         save_strategy="no", use_cpu=True, bf16=cfg["bf16"])
Trainer(model=Tiny(), args=args, train_dataset=data).train()
'''


def _script_dirs() -> list[str]:
    """Where the installed accelerate's console script lives (this venv, or the base it shares)."""
    from importlib.metadata import distribution

    dirs = [str(BIN)]
    for f in distribution("accelerate").files or []:
        if f.name == "accelerate" and f.parent.name == "bin":
            dirs.append(str(Path(f.locate()).resolve().parent))
    return dirs


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_", "FP8_"))}
    env.update(PATH=os.pathsep.join([*_script_dirs(), env.get("PATH", "")]), HF_HUB_OFFLINE="1",
               PYTHONHASHSEED="0")
    return env


def _doctor(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True, cwd=cwd,
                          env=_env(), timeout=RUN_TIMEOUT_S)


def _watch(cmd: list[str], cwd: Path) -> dict[str, Any]:
    p = _doctor(["watch", "--format", "json", "--", *cmd], cwd)
    assert p.stdout.startswith("{"), p.stderr[-3000:]
    return json.loads(p.stdout)


def _printed(tmp: Path, config: dict[str, Any], name: str, kind_args: list[str]) -> tuple[str, list[Fix]]:
    """`fp8doctor env` on the user's config: the fix text of its precision finding, and the Fix objects the doctor
    built from the same facts (which must render to exactly that text)."""
    path = tmp / name
    path.write_text(yaml.safe_dump(config))
    p = _doctor(["env", *kind_args, str(path), "--format", "json"], tmp)
    out = json.loads(p.stdout)
    [finding] = [f for f in out["findings"] if f["id"] == "precision.effective"]
    fixes = fixes_for(out["facts"], intended_backend(out["facts"]))
    assert finding["fix"] == render_all(fixes)
    return finding["fix"], fixes


def _run_fix(fix: Fix, tmp: Path, script: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    for name, text in {"train.py": script, **(extra or {})}.items():
        (tmp / name).write_text(text)
    for path, keys in fix.edits.items():  # the user's own files, edited as the fix says
        target = tmp / Path(path).name
        target.write_text(yaml.safe_dump({**yaml.safe_load(target.read_text()), **keys}))
    (tmp / "fix.sh").write_text("\n".join(render(fix)) + "\n")
    return _watch(["bash", "fix.sh"], tmp)


@pytest.fixture(scope="module")
def script_fixes(tmp_path_factory: pytest.TempPathFactory) -> list[Fix]:
    """The issue's case: an Accelerate YAML with mixed_precision fp8 (and no distributed_type)."""
    tmp = tmp_path_factory.mktemp("printed")
    text, fixes = _printed(tmp, {"mixed_precision": "fp8", "fp8_config": {"backend": "AO"}}, "acc.yaml", ["--config"])
    assert [f.key for f in fixes] == ["launch", "env"] and "accelerate launch --config_file" in text
    return fixes


def test_control_without_fix_trains_without_fp8(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    result = _watch([sys.executable, "train.py"], tmp_path)
    assert result["verdict"] != "fp8-active", result


def test_printed_accelerate_launch_fix_runs_fp8(script_fixes: list[Fix], tmp_path: Path) -> None:
    fix = script_fixes[0]
    assert fix.files[0].data["distributed_type"] == "NO" and not fix.install
    result = _run_fix(fix, tmp_path, TRAIN)
    assert result["verdict"] == "fp8-active", (result["reason"], result.get("error"))
    assert (tmp_path / "accelerate_fp8.yaml").read_text() == fix.files[0].text()


def test_printed_environment_fix_runs_fp8(script_fixes: list[Fix], tmp_path: Path) -> None:
    result = _run_fix(script_fixes[1], tmp_path, TRAIN)
    assert result["verdict"] == "fp8-active", (result["reason"], result.get("error"))


def test_printed_trainer_fix_edits_bf16_and_runs_fp8(tmp_path: Path) -> None:
    """TrainingArguments from the user's YAML with bf16: true: the fix sets bf16: false there and launches."""
    _, fixes = _printed(tmp_path, {"fp8": True, "bf16": True, "output_dir": "out"}, "args.yaml", ["--config"])
    launch = next(f for f in fixes if f.key == "launch")
    assert [(Path(p).name, keys) for p, keys in launch.edits.items()] == [("args.yaml", {"bf16": False})]
    result = _run_fix(launch, tmp_path, TRAIN_TRAINER)
    assert yaml.safe_load((tmp_path / "args.yaml").read_text())["bf16"] is False
    assert result["verdict"] == "fp8-active", (result["reason"], result.get("error"))


def test_te_fixes_say_they_are_not_proven_here() -> None:
    facts = {"packages": {"accelerate": "1.15.0"}, "configs": [], "environ": {"accelerate_fp8": {
        "ACCELERATE_FP8_BACKEND": "TE"}}}
    for fix in fixes_for(facts, "TE") + [llamafactory_fix("TE", "cfg.yaml", "1.15.0")]:
        text = "\n".join(render(fix))
        assert TE_INSTALL in text and TE_UNPROVEN.split(":")[0] in text and not fix.proven_on_cpu
    for fix in fixes_for({**facts, "environ": {}}, "AO"):
        assert "Transformer Engine" not in "\n".join(render(fix)) and fix.proven_on_cpu


def test_old_accelerate_fix_starts_with_the_upgrade() -> None:
    """accelerate < 1.9 converts nothing (1.5-1.7) or raises (1.4, 1.8) with env/launch fp8 (lab cells
    acc1.4..acc1.8): the fix upgrades first."""
    for old in ("1.4.0", "1.5.2", "1.7.0", "1.8.1"):
        for fix in fixes_for({"packages": {"accelerate": old}, "configs": []}, "AO"):
            assert fix.install[0] == "pip install 'accelerate>=1.9'"
    assert fixes_for({"packages": {"accelerate": "1.9.0"}, "configs": []}, "AO")[0].install == ()
