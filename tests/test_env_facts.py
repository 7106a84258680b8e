"""Fact getters on this real machine: versions, torch build, probes (parallel, timeout, failure), GPU sources,
Accelerate config location, environment look-alikes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from fp8doctor.facts import gpu, packages, probes
from fp8doctor.facts.accelerate_config import accelerate_config_facts, default_config_path
from fp8doctor.facts.collect import collect_facts
from fp8doctor.facts.environ import environ_facts
from fp8doctor.system.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


def test_collect_facts_real_machine_is_json_and_matches_metadata(tmp_path: Path) -> None:
    facts = collect_facts(environ={"HF_HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")})
    assert json.loads(json.dumps(facts)) == facts
    for name in ("torch", "accelerate", "transformers", "torchao", "numpy"):
        assert facts["packages"][name] == version(name)
    assert facts["torch_build"]["version"] == version("torch")
    assert facts["accelerate_config"] == {"path": str(tmp_path / "accelerate" / "default_config.yaml"),
                                          "chosen_by": "default location", "exists": False}
    assert set(facts["gpu"]["fp8_support"]) == {"per-tensor", "block", "mxfp8", "nvfp4"}
    if not facts["gpu"]["visible"]:
        status = facts["gpu"]["status"]
        assert status.startswith("no CUDA device") or "none visible" in status
    if not packages.te_installed(facts["packages"]):
        assert facts["te_import"] == {"attempted": False, "ok": None, "error": None,
                                      "reason": "Transformer Engine is not installed"}


def test_torch_build_read_without_import_matches_torch() -> None:
    """torch/version.py read as text gives what the imported torch reports (checked in a child)."""
    build = gpu.torch_build()
    [r] = probes.run_probes({"t": gpu.TORCH_PROBE}, timeout_s=120).values()
    assert r["ok"], r["error"]
    assert r["result"]["torch_cuda"] == build["cuda"]
    if not gpu.driver_present():
        assert r["result"]["gpus"] == []


def test_probes_run_in_parallel() -> None:
    body = probes.probe_code("import time\ntime.sleep(2.0)\nresult = {'slept': 2}")
    t0 = time.monotonic()
    res = probes.run_probes({k: body for k in "abcd"}, timeout_s=60)
    elapsed = time.monotonic() - t0
    assert elapsed < 6, elapsed  # one after another would take at least 8 s
    assert [res[k]["result"] for k in "abcd"] == [{"slept": 2}] * 4


def test_probes_fail_softly() -> None:
    t0 = time.monotonic()
    res = probes.run_probes({
        "boom": probes.probe_code("raise RuntimeError('libcudart.so.12: cannot open shared object file')"),
        "hang": probes.probe_code("import time\ntime.sleep(60)\nresult = {}"),
        "silent": "print('no marker here')",
        "garbage": f"print({probes.MARKER!r} + '{{not json')",
        "chatty": probes.probe_code("import sys\nsys.stderr.write('x' * 300000)\nresult = {'ok': 1}"),
    }, timeout_s=3)
    assert time.monotonic() - t0 < 20
    assert not res["boom"]["ok"] and "libcudart.so.12" in res["boom"]["error"]
    assert not res["hang"]["ok"] and "timed out" in res["hang"]["error"]
    # Probes awaited after the one that timed out keep their own result.
    assert not res["silent"]["ok"] and "no result printed" in res["silent"]["error"]
    assert not res["garbage"]["ok"] and "unreadable probe output" in res["garbage"]["error"]
    assert res["chatty"]["result"] == {"ok": 1}


def test_te_import_fact_from_probe_results() -> None:
    installed = {"transformer-engine": "2.9.0"}
    bad = {"ok": False, "result": None, "error": "ImportError: undefined symbol", "seconds": 0.5}
    fact = packages.te_import_fact(installed, bad)
    assert fact["attempted"] and fact["ok"] is False and "undefined symbol" in fact["error"]
    good = {"ok": True, "result": {"version": "2.9.0", "fp8_available": True}, "error": None, "seconds": 1.0}
    assert packages.te_import_fact(installed, good)["fp8_available"] is True


def test_nvidia_smi_output_and_visible_devices(tmp_path: Path) -> None:
    """A stand-in nvidia-smi on PATH: the real command parses it, filters CUDA_VISIBLE_DEVICES and sees a GPU."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, 9.0, 81559, 550.54.15'\n"
                   "echo '1, NVIDIA A100-SXM4-40GB, 8.0, 40960, 550.54.15'\n")
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env.update(PATH=f"{tmp_path}:{env.get('PATH', '')}", HF_HOME=str(tmp_path / "hf"), CUDA_VISIBLE_DEVICES="1")
    proc = subprocess.run([sys.executable, "-m", "fp8doctor", "env", "--format", "json"], env=env,
                          capture_output=True, text=True, timeout=120)
    doc = json.loads(proc.stdout)
    g = doc["facts"]["gpu"]
    assert g["source"] == "nvidia-smi" and len(g["all"]) == 2
    assert [d["name"] for d in g["visible"]] == ["NVIDIA A100-SXM4-40GB"]
    levels = {f["id"]: f["level"] for f in doc["findings"]}
    assert levels["gpu.too-old"] == "warn" and proc.returncode == 0
    assert gpu.visible(g["all"], "") == [] and len(gpu.visible(g["all"], None)) == 2


def test_accelerate_config_location(tmp_path: Path) -> None:
    assert default_config_path({"HF_HOME": "/x/hf"}) == Path("/x/hf/accelerate/default_config.yaml")
    xdg = default_config_path({"XDG_CACHE_HOME": "/c", "HOME": "/h"})
    assert xdg == Path("/c/huggingface/accelerate/default_config.yaml")
    assert default_config_path({"HOME": "/h"}) == Path("/h/.cache/huggingface/accelerate/default_config.yaml")
    folder = tmp_path / "accelerate"
    folder.mkdir()
    (folder / "default_config.yaml").write_text("mixed_precision: bf16\ndistributed_type: 'NO'\n")
    found = accelerate_config_facts(None, {"HF_HOME": str(tmp_path)})
    assert found["exists"] and found["mixed_precision"] == "bf16"
    ao = str(REPO / "repro_configs" / "accelerate_fp8_ao.yaml")
    via_env = accelerate_config_facts(None, {"HF_HOME": str(tmp_path), "ACCELERATE_CONFIG_FILE": ao})
    assert via_env["chosen_by"] == "ACCELERATE_CONFIG_FILE" and via_env["fp8_config"] == {"backend": "AO"}
    explicit = accelerate_config_facts(str(REPO / "repro_configs" / "accelerate_fp8_te.yaml"), {})
    assert explicit["chosen_by"] == "--accelerate-config" and explicit["fp8_config"]["backend"] == "TE"
    with pytest.raises(UsageError, match="no such file"):
        accelerate_config_facts(str(tmp_path / "missing.yaml"), {})
    with pytest.raises(UsageError, match="^ACCELERATE_CONFIG_FILE points at .*missing.yaml: no such file$"):
        accelerate_config_facts(None, {"ACCELERATE_CONFIG_FILE": str(tmp_path / "missing.yaml")})


def test_environ_facts_and_lookalikes() -> None:
    env = {"ACCELERATE_MIXED_PRECISION": "fp8", "NVTE_DEBUG": "1", "NCCL_DEBUG": "INFO", "HOME": "/root",
           "FP8_BACKEND": "te", "USE_FP8": "1", "ACCELERATE_FP8_BACKEND": "TE", "ACCELERATE_FP8_RECIPE": "x"}
    facts = environ_facts(env)
    assert set(facts["relevant"]) == {"ACCELERATE_MIXED_PRECISION", "NVTE_DEBUG", "NCCL_DEBUG",
                                      "ACCELERATE_FP8_BACKEND", "ACCELERATE_FP8_RECIPE"}
    assert facts["mixed_precision"] == "fp8"
    assert set(facts["unread_lookalikes"]) == {"FP8_BACKEND", "USE_FP8", "ACCELERATE_FP8_RECIPE"}
