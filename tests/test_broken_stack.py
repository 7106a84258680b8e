"""A training stack that cannot import is named as the environment's problem, never counted as FP8 evidence.

A real venv shares this test interpreter's torch, transformers and accelerate (tests/patient_envs.py) and gets a
torchvision that imports but registers a fake kernel for an operator its compiled library never defined, as a
torchvision built for another torch does (the LLaMA-Factory lab cells: a CUDA torchvision next to torch+cpu).
transformers then really raises "Could not import module 'Trainer'" around torch's own "RuntimeError: operator
torchvision::nms does not exist", the chain a user sees. `env` and `repro` diagnose that venv from outside
(--python), as real child processes; the fix `env` prints is then run in a copy and `env` passes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from patient_envs import build_venv

from fp8doctor.verdicts import NOT_APPLICABLE

RUN_TIMEOUT_S = 600
# torchvision's own _meta_registrations does this at import; its C++ ops library failed to load, so the operator
# was never defined and torch.library raises.
FAKE_TORCHVISION = '''import torch

torch.library.register_fake("torchvision::nms")(lambda *args: None)
'''
FILES = {"torchvision/__init__.py": FAKE_TORCHVISION,
         "torchvision-0.99.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.99.0\n",
         "torchvision-0.99.0.dist-info/INSTALLER": "pip\n"}
ROOT_CAUSE = "RuntimeError: operator torchvision::nms does not exist"


def broken_venv(root: Path, name: str) -> Path:
    python = build_venv(root, name, [])
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    record = [*FILES, "torchvision-0.99.0.dist-info/RECORD"]
    for rel, text in {**FILES, record[-1]: "".join(f"{r},,\n" for r in record)}.items():
        Path(site, rel).parent.mkdir(parents=True, exist_ok=True)
        Path(site, rel).write_text(text)
    return python


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return broken_venv(tmp_path_factory.mktemp("broken-stack"), "broken")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_"))}
    env.update(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", **extra)
    return env


def doctor(*args: str, **extra: str) -> tuple[int, dict[str, Any]]:
    p = subprocess.run([sys.executable, "-m", "fp8doctor", *args, "--format", "json"], capture_output=True,
                       text=True, timeout=RUN_TIMEOUT_S, env=_env(**extra), stdin=subprocess.DEVNULL, check=False)
    assert p.stdout.lstrip().startswith("{"), p.stderr[-3000:]
    return p.returncode, json.loads(p.stdout)


def test_env_names_the_broken_import_and_its_cause(broken: Path) -> None:
    rc, out = doctor("env", "--python", str(broken), "--check", "stack.imports")
    fact = out["facts"]["stack_import"]
    assert fact["ok"] is False
    # The chain's innermost cause, from the package whose code raised it, not transformers' wrapper alone.
    assert set(fact["failed"]) == {"transformers.Trainer", "transformers.LlamaForCausalLM"}
    trainer = fact["failed"]["transformers.Trainer"]
    assert trainer["error"].startswith("ModuleNotFoundError: Could not import module 'Trainer'")
    assert trainer["cause"] == ROOT_CAUSE
    assert trainer["package"] == "torchvision" and trainer["where"].startswith("torchvision")
    assert "accelerate.Accelerator" in fact["imported"] and "transformers.TrainingArguments" in fact["imported"]
    [finding] = out["findings"]
    assert (finding["id"], finding["level"], rc) == ("stack.imports", "fail", 1)
    assert ROOT_CAUSE in finding["detail"] and "transformers.Trainer" in finding["detail"]
    assert "pip uninstall -y torchvision" in finding["fix"].splitlines()


def test_the_printed_fix_repairs_the_environment(tmp_path: Path) -> None:
    python = broken_venv(tmp_path, "fixme")
    _, before = doctor("env", "--python", str(python), "--check", "stack.imports")
    [finding] = before["findings"]
    assert finding["level"] == "fail"
    script = tmp_path / "fix.sh"
    script.write_text(finding["fix"] + "\n")
    p = subprocess.run(["bash", "-e", str(script)], capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                       env=_env(PATH=f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"), check=False)
    assert p.returncode == 0, p.stderr
    rc, after = doctor("env", "--python", str(python), "--check", "stack.imports")
    [finding] = after["findings"]
    assert (finding["level"], rc, after["facts"]["stack_import"]["failed"]) == ("ok", 0, {})


def test_repro_reports_the_environment_not_an_fp8_failure(broken: Path) -> None:
    rc, out = doctor("repro", "--python", str(broken), "--steps", "2")
    assert rc == 1
    assert out["environment"] and ROOT_CAUSE in out["environment"]
    assert out["verdict"].startswith("ENVIRONMENT PROBLEM, not an FP8 result:")
    assert "NOT reproduced" not in out["verdict"]
    for row in out["rows"]:
        assert (row["id"], row["verdict"], row["as_expected"]) == (row["id"], NOT_APPLICABLE, True)
        assert ROOT_CAUSE in row["reason"] and "transformers.LlamaForCausalLM" in row["reason"], row
        assert row["result"]["outcome"] == "skipped"


def test_a_healthy_stack_passes_the_check() -> None:
    rc, out = doctor("env", "--check", "stack.imports")
    [finding] = out["findings"]
    assert (finding["level"], rc) == ("ok", 0)
    assert "transformers.Trainer" in out["facts"]["stack_import"]["imported"]


def test_a_probe_that_cannot_tell_stops_nothing() -> None:
    from fp8doctor.facts.stack_import import stack_import_fact
    from fp8doctor.rules.stack import check_stack_imports
    from fp8doctor.runs.machine import skip_reasons
    from fp8doctor.runs.spec import RunSpec

    timed_out = {"ok": False, "result": None, "seconds": 180.0, "error": "probe timed out after 180 s (killed)"}
    fact = stack_import_fact({"transformers": "5.24.0"}, timed_out)
    assert fact["ok"] is None and "timed out" in fact["reason"]
    assert check_stack_imports({"stack_import": fact}).level.value == "skip"
    facts = {"stack_import": fact, "installed": {"torchao": "0.18.0", "accelerate": "1.15.0"}}
    assert skip_reasons(RunSpec(backend="torchao", entry="trainer", device="cpu"), facts) == []


def test_an_error_inside_torch_gets_the_traceback_fix_not_a_guess() -> None:
    from fp8doctor.rules.stack import check_stack_imports

    fact = {"attempted": True, "ok": False, "imported": [], "reason": None, "failed": {"transformers.Trainer": {
        "error": "ModuleNotFoundError: Could not import module 'Trainer'.", "package": "torch",
        "cause": "OSError: libtorch_cuda.so: cannot open shared object file", "where": "torch:290"}}}
    finding = check_stack_imports({"stack_import": fact, "packages": {"torch": "2.13.0+cpu"}})
    assert finding.level.value == "fail" and "libtorch_cuda.so" in finding.detail
    assert "pip uninstall" not in finding.fix and "python -c 'from transformers import Trainer'" in finding.fix


def test_the_import_probe_runs_where_an_add_on_was_built_for_another_torch() -> None:
    """`env` stays fast: the probe (torch + transformers imports) runs where the lab's cause can be present."""
    from fp8doctor.facts.stack_import import worth_probing

    base = {"transformers": "5.24.0", "torch": "2.13.0+cpu"}
    assert worth_probing({**base, "torchvision": "0.28.0"}) == (True, "torchvision 0.28.0 built differently from "
                                                                      "torch 2.13.0+cpu")
    assert worth_probing({**base, "torchvision": "0.28.0+cpu", "torchaudio": "2.13.0+cu128"})[0] is True
    assert worth_probing({**base, "torchvision": "0.28.0+cpu"})[0] is False
    assert worth_probing({"accelerate": "1.15.0", "torch": "2.8.0", "torchvision": "0.23.0"})[0] is False
    assert worth_probing(base)[0] is False and "no compiled torch add-on" in worth_probing(base)[1]
    assert worth_probing({"transformers": "5.24.0", "torch": None})[0] is True
    assert worth_probing({"torch": "2.13.0+cpu", "torchvision": "0.1"})[0] is False  # no transformers/accelerate


def test_only_a_torch_add_on_is_removed_by_the_fix() -> None:
    """A library the stack needs (numpy, safetensors, torch itself) is never the one to uninstall: the fix says how to
    see the whole traceback instead; the version from untrusted facts is quoted for the shell."""
    from fp8doctor.knowledge.environment_fixes import broken_import_fix
    from fp8doctor.knowledge.fixes import render_all

    assert broken_import_fix("torchvision", "2.13.0+cpu").install[0] == "pip uninstall -y torchvision"
    for package in ("numpy", "safetensors", "torch", "transformers", "__main__", None):
        fix = broken_import_fix(package, "2.13.0+cpu")
        assert not fix.install and fix.command == ("python", "-c", "from transformers import Trainer"), package
    assert "'torch==2.13.0+cpu; rm -rf x'" in render_all([broken_import_fix("torchaudio", "2.13.0+cpu; rm -rf x")])
