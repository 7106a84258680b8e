"""`fp8doctor watch --baseline RECORD` for real: the tiny Llama watched in bf16 (its JSON report is the record),
then in torchao FP8 (emulated) against it: within the tolerance at the same learning rate, a failing loss (exit 1)
when the FP8 run's learning rate makes it diverge; a bad record is refused before the command runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fp8doctor.watch.render import render

SCRIPTS = Path(__file__).parent / "watch_scripts"


def watch(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_"))}
    return subprocess.run([sys.executable, "-m", "fp8doctor", "watch", *args], capture_output=True, text=True,
                          env={**env, "HF_HUB_OFFLINE": "1"}, cwd=SCRIPTS, timeout=600)


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("baseline") / "bf16.json"
    p = watch("--numerics", "--format", "json", "--output", str(path), "--", sys.executable, "baseline_script.py",
              "bf16", "1e-3")
    assert path.exists(), p.stderr[-3000:]
    return path


def _rank0(report: dict) -> dict:
    return next(p for p in report["processes"] if p["losses"])


def test_fp8_run_within_the_tolerance_of_its_bf16_record(record: Path) -> None:
    base = json.loads(record.read_text())
    assert base["verdict"] != "fp8-active"
    assert len(_rank0(base)["grad_norms"]) == 8  # --numerics records a gradient norm per backward
    p = watch("--baseline", str(record), "--format", "json", "--", sys.executable, "baseline_script.py", "fp8",
              "1e-3")
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)
    assert result["verdict"] == "fp8-active"
    div = result["divergence"]
    assert div["level"] == "ok" and div["baseline"] == str(record) and [r["rank"] for r in div["ranks"]] == [0]
    details = div["ranks"][0]["details"]
    assert details["loss"]["compared"] == 8 and details["grad_norm"]["compared"] == 8
    assert 0 < details["loss"]["worst_rel"] < 0.1 and 0 < details["grad_norm"]["worst_rel"] < 0.1
    assert details["tolerance"]["rtol"] == pytest.approx(0.1)
    text = render(result, "text")
    assert f"divergence vs the bf16 baseline {record}: ok" in text
    assert "rank 0: ok: loss max rel diff" in text and "torchao test/float8/test_numerics_integration.py" in text


def test_a_diverging_fp8_run_fails(record: Path) -> None:
    p = watch("--baseline", str(record), "--format", "md", "--", sys.executable, "baseline_script.py", "fp8", "0.5")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert "**divergence vs the bf16 baseline" in p.stdout and ": fail**" in p.stdout
    assert "- rank 0: fail: loss max rel diff" in p.stdout and "outside the tolerance from step 2" in p.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("not json", "not JSON"),
        ('{"verdict": "fp8-active", "processes": []}', "the baseline must be the same command in bf16"),
        ('{"verdict": "fp8-not-trained", "processes": []}', "(it ran FP8)"),
        ('{"verdict": "silent-bf16", "processes": [{"losses": []}]}', "no process of that run recorded a loss"),
        ("[1, 2]", "not an `fp8doctor watch --format json` report"),
    ],
)
def test_a_bad_record_is_refused_before_the_command_runs(tmp_path: Path, content: str, needle: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    marker = tmp_path / "ran"
    p = watch("--baseline", str(bad), "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not marker.exists()
