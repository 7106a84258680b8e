"""The whole `fp8doctor env` command on this real machine, in child processes: formats, exit codes, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fp8doctor

REPO = Path(__file__).resolve().parents[1]
REF = str(REPO / "repro_configs" / "llamafactory_te_bf16.yaml")


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This machine's environment minus FP8 settings, with an empty HF_HOME (no default Accelerate config)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "NVTE_", "FP8_")) and k not in ("HF_HOME", "XDG_CACHE_HOME")}
    return {**env, "HF_HOME": str(tmp_path / "hf"), **extra}


def doctor(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fp8doctor", "env", *args], env=clean_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def real_gpu_visible() -> bool:
    from fp8doctor.facts.collect import collect_facts

    return bool(collect_facts(environ=clean_env(Path("/nonexistent")))["gpu"]["visible"])


def test_default_view_on_this_machine(tmp_path: Path) -> None:
    proc = doctor(tmp_path)
    out = proc.stdout
    assert "Traceback" not in proc.stderr
    assert "Findings:" in out and out.rstrip().splitlines()[-1].startswith(("no blocking problem", "problems found"))
    if not real_gpu_visible():
        assert proc.returncode == 0, out  # no FP8 intent: a missing GPU warns, the command succeeds
        assert "[!] No CUDA GPU visible" in out and "    fix: Run on a GPU" in out
        assert "[-] Transformer Engine: not installed" in out
    from importlib.metadata import version

    assert f"[✓] Usable FP8 backend: torchao {version('torchao')}" in out


def test_json_has_schema_and_real_versions(tmp_path: Path) -> None:
    proc = doctor(tmp_path, "--format", "json")
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == fp8doctor.SCHEMA_VERSION and doc["exit_code"] == proc.returncode
    from importlib.metadata import version

    for name in ("accelerate", "transformers", "torchao", "torch"):
        assert doc["facts"]["packages"][name] == version(name)
    assert {f["level"] for f in doc["findings"]} <= {"ok", "warn", "fail", "skip", "error"}
    assert doc["facts"]["intent"] == [] and doc["facts"]["precision"]["effective"] == "no"


def test_md_block(tmp_path: Path) -> None:
    out = doctor(tmp_path, "--format", "md").stdout
    assert out.startswith("### `fp8doctor env`") and "| Fact" in out and "#### Findings" in out


def test_reference_config_fails_with_fix(tmp_path: Path) -> None:
    proc = doctor(tmp_path, "--config", REF, "--format", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    by_id = {f["id"]: f for f in doc["findings"]}
    assert by_id["lint.fp8-with-bf16"]["level"] == "fail"
    assert by_id["precision.effective"]["level"] == "fail" and "bf16" in by_id["precision.effective"]["title"]
    assert "#   bf16: false" in by_id["precision.effective"]["fix"]
    assert "llamafactory-cli train" in by_id["precision.effective"]["fix"]
    chain = [c["stage"] for c in doc["facts"]["precision"]["chain"]]
    assert chain == ["config", "env", "TrainingArguments", "LLaMA-Factory", "Accelerator"]


def test_fixed_setup_passes_precision(tmp_path: Path) -> None:
    fixed = tmp_path / "lf.yaml"
    fixed.write_text(Path(REF).read_text().replace("bf16: true", "bf16: false").replace("fp8_backend: te",
                                                                                          "fp8_backend: torchao"))
    proc = doctor(tmp_path, "--config", str(fixed), "--accelerate-config",
                  str(REPO / "repro_configs" / "accelerate_fp8_ao.yaml"), "--format", "json")
    doc = json.loads(proc.stdout)
    levels = {f["id"]: f["level"] for f in doc["findings"]}
    assert levels["accel-config.precision"] == "ok" and "accel-config.launch" not in levels  # has distributed_type
    assert doc["facts"]["accelerate_config"]["chosen_by"] == "--accelerate-config"
    # transformers 5.x: TrainingArguments reads the variable before LLaMA-Factory sets it, so a plain
    # llamafactory-cli run passes mixed_precision='no'; `accelerate launch` sets it first and fp8 wins.
    prec = doc["facts"]["precision"]
    assert (levels["precision.effective"], prec["effective"], prec["with_launch"]) == ("warn", "no", "fp8")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--config", "/nonexistent/train.yaml"], "no such file"),
        (["--accelerate-config", "/nonexistent/acc.yaml"], "no such file"),
        (["--format", "html"], "invalid choice"),
        (["--config", "BINARY"], "binary"),
        (["--config", "HOSTILE"], "refused unsafe"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01\x02")
    (tmp_path / "h.yaml").write_text("a: !!python/object/new:os.system [echo hi]\n")
    args = [{"BINARY": str(tmp_path / "bin.yaml"), "HOSTILE": str(tmp_path / "h.yaml")}.get(a, a) for a in args]
    proc = doctor(tmp_path, *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_env_command_does_not_import_torch(tmp_path: Path) -> None:
    code = ("import sys\nfrom fp8doctor.cli import main\nrc = main(['env', '--format', 'json'])\n"
            "heavy = [m for m in ('torch', 'accelerate', 'transformers', 'torchao') if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]
