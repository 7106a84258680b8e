"""The fix `fp8doctor watch` prints is run as printed, for the forms users start training with: an interpreter given
by its absolute path (a venv's `bin/python`), `python -m module`, and `accelerate launch` with a bf16 option (as a
module and as the venv's console entry point). Each
control run trains without FP8; the printed fix, written to a file and run with bash in a fresh directory, must
then train with FP8 active (torchao on CPU), with the command the user gave kept in its form.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from fp8doctor.knowledge.fixes import Fix, fixes_for, render, render_all
from fp8doctor.knowledge.generations import intended_backend
from tests.test_fixes_executed import TRAIN, _doctor, _watch

PY = sys.executable  # an absolute interpreter path, as `watch -- /abs/venv/bin/python train.py` has it


def _printed_fixes(result: dict[str, Any], cwd: Path) -> list[Fix]:
    """The Fix objects behind watch's printed fix (which must render to exactly the printed lines)."""
    facts = {"packages": result["versions"], "command": result["command"], "configs": [],
             "environ": {"accelerate_fp8": {}}}
    fixes = fixes_for(facts, intended_backend(facts))
    assert result["fix"] == render_all(fixes).splitlines()
    return fixes


def _run_as_printed(fix: Fix, tmp: Path, files: dict[str, str]) -> dict[str, Any]:
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    (tmp / "fix.sh").write_text("\n".join(render(fix)) + "\n")
    return _watch(["bash", "fix.sh"], tmp)


@pytest.fixture(scope="module")
def venv_python_watch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("control")
    (tmp / "train.py").write_text(TRAIN)
    return _watch([PY, "train.py", "--steps", "3"], tmp)


def test_control_interpreter_path_trains_without_fp8(venv_python_watch: dict[str, Any]) -> None:
    assert venv_python_watch["verdict"] != "fp8-active", venv_python_watch["reason"]
    assert venv_python_watch["fix"], "watch printed no fix"


@pytest.mark.parametrize("key", ["launch", "env"])
def test_fix_after_interpreter_path_runs_fp8(venv_python_watch: dict[str, Any], key: str, tmp_path: Path) -> None:
    [fix] = [f for f in _printed_fixes(venv_python_watch, tmp_path) if f.key == key]
    assert fix.command[0] == PY and "train.py" in fix.command and PY not in fix.command[1:]
    result = _run_as_printed(fix, tmp_path, {"train.py": TRAIN})
    assert result["verdict"] == "fp8-active", (fix.command, result["reason"], result.get("error"))
    [rank] = result["ranks"]
    argv = next(p["argv"] for p in result["processes"] if p["pid"] == rank["pid"])
    assert argv[-3:] == ["train.py", "--steps", "3"], argv


def test_fix_after_python_m_module_runs_fp8(tmp_path: Path) -> None:
    files = {"pkg/__init__.py": "", "pkg/train.py": TRAIN}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    control = _watch([PY, "-m", "pkg.train", "--steps", "3"], tmp_path)
    assert control["verdict"] != "fp8-active"
    [rank] = control["ranks"]  # the child's argv as it ran: the module kept (sys.argv alone shows `-m --steps 3`)
    assert next(p["argv"] for p in control["processes"] if p["pid"] == rank["pid"]) == ["-m", "pkg.train", "--steps",
                                                                                         "3"]
    [fix] = [f for f in _printed_fixes(control, tmp_path) if f.key == "launch"]
    assert fix.command[-4:] == ("-m", "pkg.train", "--steps", "3")
    result = _run_as_printed(fix, tmp_path, files)
    assert result["verdict"] == "fp8-active", (fix.command, result["reason"], result.get("error"))


def test_fix_after_accelerate_launch_bf16_runs_fp8(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    launcher = str(Path(PY).parent / "accelerate")
    cmd = [PY, "-m", "accelerate.commands.launch", "--mixed_precision", "bf16", "--num_processes", "1", "train.py"]
    control = _watch(cmd, tmp_path)
    assert control["verdict"] != "fp8-active", control["reason"]
    [fix] = _printed_fixes(control, tmp_path)
    assert fix.command[:3] == (PY, "-m", "accelerate.commands.launch") and "--mixed_precision" not in fix.command
    assert "--num_processes" in fix.command and launcher not in fix.command
    result = _run_as_printed(fix, tmp_path, {"train.py": TRAIN})
    assert result["verdict"] == "fp8-active", (fix.command, result["reason"], result.get("error"))


def test_fix_after_accelerate_console_entry_point_runs_fp8(tmp_path: Path) -> None:
    """`/abs/venv/bin/accelerate launch ...` (the console entry point by its path) keeps its form in the fix."""
    (tmp_path / "train.py").write_text(TRAIN)
    launcher = str(Path(PY).parent / "accelerate")
    control = _watch([launcher, "launch", "--mixed_precision", "bf16", "--num_processes", "1", "train.py"], tmp_path)
    assert control["verdict"] != "fp8-active", control["reason"]
    [fix] = _printed_fixes(control, tmp_path)
    assert fix.command[:4] == (launcher, "launch", "--config_file", "accelerate_fp8.yaml"), fix.command
    assert "--mixed_precision" not in fix.command and fix.command[-3:] == ("--num_processes", "1", "train.py")
    result = _run_as_printed(fix, tmp_path, {"train.py": TRAIN})
    assert result["verdict"] == "fp8-active", (fix.command, result["reason"], result.get("error"))


def test_watch_text_prints_the_same_fix(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    p = _doctor(["watch", "--", PY, "train.py"], tmp_path)
    text = p.stdout.split("fix:\n", 1)[1]
    assert f"  {PY} -m accelerate.commands.launch --config_file accelerate_fp8.yaml train.py" in text
    assert f"python {PY}" not in text and json.dumps(PY) not in text
