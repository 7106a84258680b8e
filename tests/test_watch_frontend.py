"""`watch` names the frontend a command starts (axolotl here) and gives that frontend's fix, on typed observer records
written to files as the observer writes them and read back through `collect` (the live run of the same in axolotl's
lab cell is tests/test_axolotl_fix_executed.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from fp8doctor.knowledge.fixes import fixes_for, render
from fp8doctor.knowledge.frontends import AXOLOTL, AXOLOTL_NO_FP8_GPU
from fp8doctor.verdicts import NO_ACCELERATOR
from fp8doctor.watch.collect import collect
from fp8doctor.watch.frontend_stop import frontend_stopped
from fp8doctor.watch.verdicts import facts_from_processes, fix_hint, overall_verdict, process_verdict

PY = "/venv/bin/python"
AXOLOTL_BIN = "/venv/bin/axolotl"
CFG = "/work/cfg.yaml"
VERSIONS = {"accelerate": "1.13.0", "transformers": "5.16.0", "torchao": "0.17.0", "axolotl": "0.19.0"}
# pydantic's message as axolotl's load_cfg raises it on a machine without an FP8 GPU
REFUSAL = (f"1 validation error for AxolotlInputConfig\n  Value error, {AXOLOTL_NO_FP8_GPU} [type=value_error, "
           "input_value={'fp8': True}, input_type=dict]")
LAUNCHER_EXIT = "Command '['/venv/bin/python', '-m', 'axolotl.cli.train', '/work/cfg.yaml']' returned non-zero exit"


def _process(pid: int, ppid: int, argv: list[str], exception: tuple[str, str] | None = None,
             env_start: str | None = "fp8", accelerator: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = [
        {"kind": "process", "pid": pid, "ppid": ppid, "argv": argv, "executable": PY, "rank_env": {},
         "env_at_start": {"ACCELERATE_MIXED_PRECISION": env_start}},
        {"kind": "versions", "versions": VERSIONS},
    ]
    if accelerator is not None:
        recs.append({"kind": "accelerator", "id": 0, **accelerator})
    if exception is not None:
        recs.append({"kind": "exception", "type": exception[0], "message": exception[1]})
    return [*recs, {"kind": "exit"}]


def _watch(tmp_path: Path, cmd: list[str], *procs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """What `watch -- CMD` judges and prints as the fix from these processes' records."""
    for recs in procs:
        (tmp_path / f"{recs[0]['pid']}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    seen = collect(tmp_path)
    verdict, facts = frontend_stopped(overall_verdict(seen), seen, cmd,
                                      {**facts_from_processes(seen), "command": cmd})
    return verdict, fix_hint(verdict, facts)


def _axolotl_fix(cmd: list[str]) -> list[str]:
    [fix] = fixes_for({"command": cmd}, "AO")
    assert fix.key == "axolotl" and fix.edits == {CFG: {"fp8": True}} and fix.command == tuple(cmd)
    return render(fix)


def test_axolotl_refusing_fp8_before_an_accelerator_is_named_with_its_message_and_fix(tmp_path: Path) -> None:
    # `watch -- bash fix.sh`, fix.sh running `axolotl train cfg.yaml`, which execs `accelerate launch` in its own
    # process (the same pid, so the same record file), which starts axolotl's training module
    entry = [AXOLOTL_BIN, "train", CFG]
    launch = ["/venv/bin/accelerate", "launch", "-m", "axolotl.cli.train", CFG, "--debug=False"]
    execd = _process(10, 5, entry)[:-1] + _process(10, 5, launch, ("CalledProcessError", LAUNCHER_EXIT))
    verdict, fix = _watch(tmp_path, ["bash", "fix.sh"], execd,
                          _process(11, 10, ["-m", "axolotl.cli.train", CFG], ("ValidationError", REFUSAL)))
    assert verdict["verdict"] == NO_ACCELERATOR and verdict["frontend"] == "axolotl", verdict
    assert verdict["reason"].startswith("axolotl stopped the run before any Accelerator was built: ValidationError")
    assert AXOLOTL_NO_FP8_GPU in verdict["reason"] and "CalledProcessError" not in verdict["reason"]
    assert fix == _axolotl_fix(entry) and fix[-1] == shlex.join(entry)


def test_accelerate_launch_of_axolotls_module_keeps_its_form(tmp_path: Path) -> None:
    cmd = ["accelerate", "launch", "--num_processes", "1", "-m", "axolotl.cli.train", CFG]
    verdict, fix = _watch(tmp_path, cmd,
                          _process(20, 1, ["/venv/bin/accelerate", *cmd[1:]], ("CalledProcessError", LAUNCHER_EXIT)),
                          _process(21, 20, cmd[4:], ("ValidationError", REFUSAL)))
    assert verdict["winner"] == "axolotl" and AXOLOTL_NO_FP8_GPU in verdict["reason"], verdict
    assert fix == _axolotl_fix(cmd)


def test_a_script_that_builds_no_accelerator_keeps_the_generic_verdict(tmp_path: Path) -> None:
    verdict, fix = _watch(tmp_path, [PY, "train.py"], _process(30, 1, ["train.py"], ("ValueError", "bad data")))
    assert verdict["verdict"] == NO_ACCELERATOR and "frontend" not in verdict, verdict
    assert fix == ["# no Accelerator was built: the command does not train through accelerate (or never reached it)"]


def test_axolotls_rewrite_of_the_variable_names_axolotl_and_its_field(tmp_path: Path) -> None:
    acc = {"arg_mixed_precision": None, "env": {"ACCELERATE_MIXED_PRECISION": "bf16"},
           "result": {"mixed_precision": "bf16", "fp8_enabled": False, "fp8_backend": "NO"}}
    for pid, argv in ((40, ["-m", "axolotl.cli.train", CFG]), (41, ["train.py"])):
        (tmp_path / f"{pid}.jsonl").write_text("".join(json.dumps(r) + "\n"
                                                       for r in _process(pid, 1, argv, accelerator=acc)))
    axolotl, script = collect(tmp_path)
    v = process_verdict(axolotl)
    assert v["winner"] == "axolotl" and v["frontend"] == "axolotl", v
    assert f"'bf16' when the Accelerator was built: axolotl 0.19.0 {AXOLOTL.overrides}; set {AXOLOTL.how}" \
        in v["reason"], v["reason"]
    assert process_verdict(script)["reason"].endswith("the command changed it")
