"""`fp8doctor watch --numerics` on a real Accelerate + torchao FP8 run (CPU, emulated) with a planted layer whose
input underflows in the e4m3 cast: it is named, with its underflow and SQNR, in every format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fp8doctor.knowledge.numerics import SQNR_MIN_DB
from fp8doctor.numerics import NumericsSampler
from fp8doctor.watch.render import render

SCRIPTS = Path(__file__).parent / "watch_scripts"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_"))}
    env.update(HF_HUB_OFFLINE="1")
    return env


@pytest.fixture(scope="module")
def watched() -> dict:
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "watch", "--numerics", "--numerics-every", "5",
                        "--format", "json", "--", sys.executable, "numerics_script.py"], capture_output=True,
                       text=True, env=_env(), cwd=SCRIPTS, timeout=600)
    assert p.stdout.startswith("{"), p.stderr[-3000:]
    return json.loads(p.stdout)


def test_the_planted_underflow_layer_is_named(watched: dict) -> None:
    n = watched["ranks"][0]["model"]["numerics"]
    assert sorted(n["layers"]) == ["1", "3", "4"] and n["every"] == 5
    assert all(row["samples"] == 4 and row["calls"] == 20 for row in n["layers"].values())  # 20 steps, every 5th
    planted = n["layers"]["3"]
    assert planted["input_underflow_max"] > 0.9 and planted["sqnr_db_min"] < SQNR_MIN_DB
    assert planted["input_amax_max"] == pytest.approx(1e3)
    for name in ("1", "4"):
        assert n["layers"][name]["input_underflow_max"] < 0.01 and n["layers"][name]["sqnr_db_min"] >= SQNR_MIN_DB
    assert n["candidates"] == ["3"] and "'3'" in n["config"]["accelerate"] and "'3'" in n["config"]["torchao"]


def test_numerics_in_text_and_markdown(watched: dict) -> None:
    text = render(watched, "text")
    assert "FP8 numerics (each FP8 layer sampled every 5 calls" in text
    assert "candidates to keep in bf16 (SQNR below 25 dB" in text and text.count("98.44%") == 1
    md = render(watched, "md")
    assert "| layer " in md and "candidates to keep in bf16" in md


def test_sampler_measures_torchaos_own_cast() -> None:
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 32, bias=False))
    convert_to_float8_training(model, config=Float8LinearConfig(emulate=True))
    sampler = NumericsSampler(every=2).attach(model)
    x = torch.randn(8, 32)
    x[:, 1:] *= 1e-7  # all but one feature flush to zero at a tensorwise scale set by the largest value
    x[0, 0] = 1e4
    for _ in range(3):
        model(x)
    row = sampler.to_dict()["0"]
    assert row["samples"] == 2 and row["calls"] == 3
    assert row["input_underflow_max"] == pytest.approx(8 * 31 / (8 * 32), abs=0.01)
    assert row["input_saturated_max"] == 0.0 and row["weight_underflow_max"] < 0.01
    sampler.detach()
    model(x)
    assert sampler.to_dict()["0"]["calls"] == 3


def test_numerics_every_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    from fp8doctor import cli

    assert cli.main(["watch", "--numerics", "--numerics-every", "0", "--", "true"]) == 2
    assert "--numerics-every must be between 1" in capsys.readouterr().err
