"""The `optimizer.fp8-weights` check: on typed facts for releases the lab observed with and without the problem,
and its printed Accelerate-config fix executed with a real `accelerate launch` on CPU (installed accelerate and
torchao), the launched script counting the parameters its optimizer does not hold (fp8doctor.observe, as runs
record them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from fp8doctor.findings import Level
from fp8doctor.knowledge.fixes import fixes_for
from fp8doctor.knowledge.optimizer_params import SENTENCE
from fp8doctor.rules.optimizer import ID, check_fp8_weights_in_optimizer

OBSERVATIONS = Path(__file__).resolve().parents[1] / "lab" / "observations"
USER_YAML = {"distributed_type": "NO", "mixed_precision": "fp8", "fp8_config": {"backend": "AO"}}
RUN_TIMEOUT_S = 400

TRAIN = '''
import json
import torch
from accelerate import Accelerator
from fp8doctor.observe import fp8_layer_names, params_outside_optimizer

accelerator = Accelerator()
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(6)])
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
model, optimizer = accelerator.prepare(model, optimizer)
for step in range(2):
    accelerator.backward(model(torch.randn(16, 64)).pow(2).mean())
    optimizer.step()
    optimizer.zero_grad()
print("RESULT " + json.dumps({"fp8_layers": fp8_layer_names(model),
                              "outside": params_outside_optimizer(model, optimizer)}), flush=True)
'''


def _launch_cases(outside: bool) -> list[tuple[str, str]]:
    """(accelerate, torchao) of cells whose recorded launch of `fp8_config: {backend: AO}` trained FP8 with the FP8
    weights outside the optimizer (outside=True) or all of them held."""
    out = []
    for path in sorted(OBSERVATIONS.glob("*.json")):
        rec = json.loads(path.read_text())
        for case in rec.get("probes", {}).get("optimizer_params", []):
            if (case["inputs"].get("fp8_config") == {"backend": "AO"} and case["outcome"] == "ok"
                    and case["fp8_layers"] and bool(case["fp8_weights_outside_optimizer"]) == outside):
                out.append((rec["versions"]["accelerate"], rec["versions"]["torchao"]))
    return out


def _facts(accelerate: str, torchao: str, fp8_config: dict[str, Any] | None = None,
           env: dict[str, str] | None = None) -> dict[str, Any]:
    configs = [] if fp8_config is None else [{"kind": "accelerate", "path": "acc.yaml",
                                              "data": {**USER_YAML, "fp8_config": fp8_config}}]
    environ = {"mixed_precision": "fp8", "accelerate_fp8": env} if env else {}
    return {"packages": {"accelerate": accelerate, "torchao": torchao}, "configs": configs, "environ": environ}


def test_affected_release_fails_with_the_key_as_fix() -> None:
    affected = _launch_cases(outside=True)
    assert affected
    for accelerate, torchao in affected:
        [f] = check_fp8_weights_in_optimizer(_facts(accelerate, torchao, {"backend": "AO"}))
        assert (f.id, f.level) == (ID, Level.FAIL) and f.title.startswith(SENTENCE)
        assert "enable_fsdp_float8_all_gather: false" in f.fix and "AORecipeKwargs(config=Float8LinearConfig(" in f.fix
        [f] = check_fp8_weights_in_optimizer(_facts(accelerate, torchao, {"backend": "AO",
                                                                          "enable_fsdp_float8_all_gather": False}))
        assert f.level is Level.OK
        [f] = check_fp8_weights_in_optimizer(_facts(accelerate, torchao, env={"ACCELERATE_FP8_BACKEND": "AO"}))
        assert f.level is Level.FAIL and "export ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER=false" in f.fix


def test_unaffected_and_unobserved_releases() -> None:
    held = _launch_cases(outside=False)
    assert held
    for accelerate, torchao in held:
        [f] = check_fp8_weights_in_optimizer(_facts(accelerate, torchao, {"backend": "AO"}))
        assert f.level is Level.OK, (accelerate, f)
    accelerate, torchao = _launch_cases(outside=True)[-1]
    major, minor, *_ = accelerate.split(".")
    [f] = check_fp8_weights_in_optimizer(_facts(f"{major}.{int(minor) + 50}.0", torchao, {"backend": "AO"}))
    assert f.level is Level.SKIP and "not observed" in f.title
    [f] = check_fp8_weights_in_optimizer({"packages": {"accelerate": accelerate, "torchao": torchao}})
    assert f.level is Level.SKIP


def test_the_doctors_own_launch_and_environment_fixes_keep_the_weights_in_the_optimizer() -> None:
    for accelerate, torchao in _launch_cases(outside=True):
        fixes = {f.key: f for f in fixes_for({"packages": {"accelerate": accelerate, "torchao": torchao}}, "AO")}
        [f] = check_fp8_weights_in_optimizer(_facts(accelerate, torchao, fixes["launch"].files[0].data["fp8_config"]))
        assert f.level is Level.OK, f
        env = {k: v for k, v in fixes["env"].env.items() if k.startswith("ACCELERATE_FP8_")}
        [f] = check_fp8_weights_in_optimizer(_facts(accelerate, torchao, env=env))
        assert f.level is Level.OK, f


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_", "FP8_"))}
    env.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]), HF_HUB_OFFLINE="1",
               ACCELERATE_USE_CPU="true", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env


def _printed_fix(tmp: Path) -> str:
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "env", "--config", "acc.yaml", "--check", ID, "--format",
                        "json"], capture_output=True, text=True, cwd=tmp, env=_env(), timeout=RUN_TIMEOUT_S)
    [finding] = json.loads(p.stdout)["findings"]
    assert finding["level"] == "fail", finding
    return finding["fix"]


def _apply(fix: str, tmp: Path) -> list[str]:
    """The printed fix as a user applies it: the YAML under `# in FILE, set:` merged into FILE; the command."""
    lines = fix.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# in ") and line.endswith(", set:"))
    target = tmp / lines[start][len("# in "):-len(", set:")]
    block = [line[len("#   "):] for line in lines[start + 1:] if line.startswith("#   ")]
    target.write_text(yaml.safe_dump({**yaml.safe_load(target.read_text()), **yaml.safe_load("\n".join(block))}))
    return lines[-1].split()


def _launch(command: list[str], tmp: Path) -> dict[str, Any]:
    p = subprocess.run(command, capture_output=True, text=True, cwd=tmp, env=_env(), timeout=RUN_TIMEOUT_S)
    found = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    assert p.returncode == 0 and found, p.stderr[-3000:]
    return json.loads(found[-1].removeprefix("RESULT "))


def test_printed_yaml_fix_keeps_every_fp8_weight_in_the_optimizer(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "acc.yaml").write_text(yaml.safe_dump(USER_YAML))
    fix = _printed_fix(tmp_path)
    command = fix.splitlines()[-1].split()
    assert command[:4] == ["accelerate", "launch", "--config_file", "acc.yaml"]
    before = _launch(command, tmp_path)  # the control: the user's file as it is
    assert before["fp8_layers"] and before["outside"] == [f"{n}.weight" for n in before["fp8_layers"]]
    after = _launch(_apply(fix, tmp_path), tmp_path)
    assert yaml.safe_load((tmp_path / "acc.yaml").read_text())["fp8_config"]["enable_fsdp_float8_all_gather"] is False
    assert after["fp8_layers"] == before["fp8_layers"] and after["outside"] == []
