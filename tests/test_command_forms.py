"""The form of the user's command, and the fixes rendered for it: the interpreter stays the interpreter, a script the
script, a launcher or a frontend's entry point keeps its form (pure; tests/test_fix_forms_executed.py runs them)."""

from __future__ import annotations

import pytest

from fp8doctor.knowledge.command_forms import launched, parse, plain
from fp8doctor.knowledge.fixes import fixes_for, render

VENV_PY = "/abs/venv/bin/python"


@pytest.mark.parametrize(("cmd", "kind", "target", "args"), [
    ([VENV_PY, "train.py", "--lr", "1"], "python", ("train.py",), ("--lr", "1")),
    (["python3", "-X", "dev", "-u", "t.py"], "python", ("t.py",), ()),
    (["python", "-m", "pkg.train", "--x"], "python", ("-m", "pkg.train"), ("--x",)),
    (["accelerate", "launch", "--num_processes", "2", "--cpu", "train.py", "-a"], "launch", ("train.py",), ("-a",)),
    ([VENV_PY, "-m", "accelerate.commands.launch", "-m", "pkg", "x"], "launch", ("-m", "pkg"), ("x",)),
    (["torchrun", "--nproc_per_node=2", "--standalone", "t.py", "a"], "torchrun", ("t.py",), ("a",)),
    ([VENV_PY, "-m", "torch.distributed.run", "--nnodes", "1", "t.py"], "torchrun", ("t.py",), ()),
    (["/v/bin/trl", "sft", "--config", "c.yaml"], "entry", (), ("sft", "--config", "c.yaml")),
    (["./train.py", "a"], "script", ("./train.py",), ("a",)),
    (["bash", "run.sh"], "other", (), ()),
    (["python", "-c", "print(1)"], "other", (), ()),
])
def test_parse_finds_the_target(cmd: list[str], kind: str, target: tuple, args: tuple) -> None:
    form = parse(cmd)
    assert (form.kind, form.target, form.args) == (kind, target, args)
    assert form.argv == tuple(cmd) or form.kind == "launch"  # -m moves into the target


def test_an_interpreter_path_stays_the_interpreter() -> None:
    form = parse([VENV_PY, "-u", "train.py", "--steps", "3"])
    assert plain(form) == (VENV_PY, "-u", "train.py", "--steps", "3")
    assert launched(form, "a.yaml") == (VENV_PY, "-u", "-m", "accelerate.commands.launch", "--config_file", "a.yaml",
                                        "train.py", "--steps", "3")
    assert launched(parse(["python", "train.py"]), "a.yaml") == ("accelerate", "launch", "--config_file", "a.yaml",
                                                                 "train.py")
    assert launched(parse(["python", "-m", "pkg"]), "a.yaml")[-3:] == ("a.yaml", "-m", "pkg")


def test_accelerate_launch_keeps_its_options_but_not_a_precision() -> None:
    form = parse(["accelerate", "launch", "--mixed_precision", "bf16", "--config_file=old.yaml", "--num_processes",
                  "1", "train.py", "--mixed_precision", "x"])
    assert launched(form, "a.yaml") == ("accelerate", "launch", "--config_file", "a.yaml", "--num_processes", "1",
                                        "train.py", "--mixed_precision", "x")


def test_no_launch_fix_where_it_would_change_the_launcher() -> None:
    for cmd in (["torchrun", "t.py"], ["trl", "sft"], ["bash", "run.sh"]):
        assert launched(parse(cmd), "a.yaml") is None


@pytest.mark.parametrize("cmd", [[VENV_PY, "train.py", "--steps", "3"], ["/opt/py/bin/python3.12", "-m", "pkg.t"]])
def test_printed_fixes_keep_the_interpreter(cmd: list[str]) -> None:
    fixes = fixes_for({"packages": {"accelerate": "1.15.0"}, "configs": [], "command": cmd}, "AO")
    assert [f.key for f in fixes] == ["launch", "env"]
    launch, env = ("\n".join(render(f)).splitlines()[-1] for f in fixes)
    assert launch.startswith(f"{cmd[0]} -m accelerate.commands.launch --config_file accelerate_fp8.yaml ")
    assert env == " ".join(cmd)
    assert f"python {cmd[0]}" not in launch + env and f"launch --config_file accelerate_fp8.yaml {cmd[0]}" not in launch


def test_under_accelerate_launch_only_the_launch_fix() -> None:
    cmd = ["/v/bin/accelerate", "launch", "--mixed_precision", "bf16", "train.py"]
    [fix] = fixes_for({"packages": {"accelerate": "1.15.0"}, "configs": [], "command": cmd}, "AO")
    assert fix.command == ("/v/bin/accelerate", "launch", "--config_file", "accelerate_fp8.yaml", "train.py")


def test_llamafactory_entry_point_keeps_its_path() -> None:
    cmd = ["/v/bin/llamafactory-cli", "train", "cfg.yaml"]
    [fix] = fixes_for({"packages": {"accelerate": "1.11.0"}, "configs": [], "command": cmd}, "AO")
    assert fix.command == tuple(cmd) and fix.edits == {"cfg.yaml": {"fp8": True, "fp8_backend": "torchao",
                                                                   "bf16": False}}


def test_another_interpreter_imports_the_whole_package() -> None:
    """watch and --python put this folder on another interpreter's path: it must hold the fp8doctor package itself
    (its observer included), not the folder target.py lives in."""
    from pathlib import Path

    from fp8doctor.system.target import package_only_dir

    linked = Path(package_only_dir()) / "fp8doctor"
    assert (linked / "__init__.py").exists() and (linked / "watch" / "observer.py").exists()


def test_launch_fix_keeps_the_launcher_and_replaces_its_precision() -> None:
    form = parse([VENV_PY, "-m", "accelerate.commands.launch", "--mixed_precision", "bf16", "t.py"])
    assert launched(form, "a.yaml") == (VENV_PY, "-m", "accelerate.commands.launch", "--config_file", "a.yaml", "t.py")
    assert launched(parse(["./train.py", "x"]), "a.yaml") == ("accelerate", "launch", "--config_file", "a.yaml",
                                                             "./train.py", "x")


def test_an_option_with_its_value_after_equals_takes_one_token() -> None:
    form = parse(["accelerate", "launch", "--num_processes=2", "train.py", "a"])
    assert (form.kind, form.target, form.args) == ("launch", ("train.py",), ("a",))
