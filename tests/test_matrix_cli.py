"""`fp8doctor matrix` for real: the CPU torchao matrix (shared run), --resume over a truncated file, bad usage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import CPU_MATRIX_ARGS, CPU_MATRIX_ENTRIES

from fp8doctor.knowledge.optimizer_params import DEFAULT_ON_FROM, SENTENCE, predict_optimizer
from fp8doctor.knowledge.versions import release
from fp8doctor.repro.expect import diagnosed_stack, launch_config_of, setup_of
from fp8doctor.runs.spec import ENTRIES, TE_RECIPES, TORCHAO_RECIPES, RunSpec


def fp8doctor(*args: str, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_cpu_matrix_runs_every_torchao_cell_and_fails_only_where_fp8_weights_never_train(cpu_matrix) -> None:
    data = cpu_matrix["json"]
    assert data is not None, cpu_matrix["stdout"][-3000:] + cpu_matrix["stderr"]
    fp8 = [c for c in data["cells"] if c["role"] == "fp8"]
    base = [c for c in data["cells"] if c["role"] == "baseline"]
    assert len(fp8) == len(TORCHAO_RECIPES) * len(CPU_MATRIX_ENTRIES)
    assert sorted(c["result"]["spec"]["entry"] for c in base) == sorted(CPU_MATRIX_ENTRIES)
    limits = [c for c in fp8 if c["status"] == "skip"]
    assert all(c["verdicts"][0]["detail"].startswith("known CPU limit: ") for c in limits), limits
    # The one known CPU limit is a recipe's (rowwise_with_gw_hp under bf16 autocast), on every path: the native
    # entry runs under the same bf16 autocast as Accelerate's.
    assert {c["result"]["spec"]["recipe"] for c in limits} <= {"rowwise_with_gw_hp"}, limits
    # Where Accelerate builds its own torchao config (the Trainer and `accelerate launch` tensorwise cells), from
    # 1.13 its enable_fsdp_float8_all_gather=True leaves every FP8 weight out of the optimizer (docs/matrix.md,
    # `optimizer`): the cells the engine predicts this for fail that check, and only it; every other cell passes
    # or warns. The engine's prediction needs a start it has input for: on accelerate 1.15 it covers both.
    frozen = [c for c in fp8 if c["status"] != "skip" and c["result"]["outside_optimizer"]]
    stack = diagnosed_stack()
    predicted = []
    for c in fp8:
        spec = RunSpec.from_dict(c["result"]["spec"])
        setup = setup_of(spec, stack, launch_config_of(spec) if spec.entry == "launch" else None)
        if c["status"] != "skip" and setup and predict_optimizer(stack, setup).get("weights_outside_optimizer"):
            predicted.append(c)
    assert [c["label"] for c in frozen] == [c["label"] for c in predicted]
    assert bool(frozen) == (release(stack.accelerate) >= DEFAULT_ON_FROM), stack.accelerate
    for c in frozen:
        assert c["status"] == "fail" and [v["check"] for v in c["verdicts"] if v["level"] == "fail"] == ["optimizer"]
        v = next(v for v in c["verdicts"] if v["check"] == "optimizer")
        assert v["detail"].startswith(f"{SENTENCE}: {len(c['result']['outside_optimizer'])} trainable parameters")
        assert c["result"]["outside_optimizer"] == [f"{layer}.weight" for layer in c["result"]["fp8_layers"]]
    assert cpu_matrix["rc"] == 1, cpu_matrix["stderr"]
    assert all(c["status"] in ("pass", "warn") for c in base + fp8 if c not in limits + frozen), [
        c["label"] for c in base + fp8 if c["status"] not in ("pass", "warn", "skip")]
    # The one warning here is the gradient norm (loss in tolerance: a loss miss fails).
    warned = {v["check"] for c in fp8 for v in c["verdicts"] if v["level"] == "warn"}
    assert warned <= {"divergence"}, warned
    for c in fp8:
        if c["status"] == "skip":
            continue
        div = next(v for v in c["verdicts"] if v["check"] == "divergence")
        assert "grad norm max rel diff" in div["detail"] and "torchao test/float8" in div["detail"], div
        if c["result"]["spec"]["entry"] in ("native", "accelerator", "multiproc"):
            assert div["level"] == "ok" and div["value"] < 0.1, div
        if c not in frozen:
            assert next(v for v in c["verdicts"] if v["check"] == "optimizer")["level"] == "ok", c["label"]
        # numerics: every FP8 layer sampled (8 steps, K = 20: its first call) with amax, underflow and SQNR
        n = c["result"]["numerics"]
        assert n["every"] == 20 and sorted(n["layers"]) == sorted(c["result"]["fp8_layers"])
        for row in n["layers"].values():
            assert row["samples"] == 1 and row["calls"] == 8 and row["sqnr_db_min"] > 20, row
            assert row["input_amax_max"] > 0 and 0 <= row["input_underflow_max"] < 0.01, row
        assert next(v for v in c["verdicts"] if v["check"] == "numerics")["level"] == "ok"
        # checkpoint: the trained FP8 model's weights load strictly into the model without FP8, unchanged
        saved = next(v for v in c["verdicts"] if v["check"] == "checkpoint")
        if c["result"]["spec"]["entry"] in ("accelerator", "launch", "multiproc"):
            assert saved["level"] == "ok", saved
            assert c["result"]["checkpoint"]["bytes"] > 0 and c["result"]["checkpoint"]["max_abs_diff"] == 0.0
        else:
            assert saved["level"] == "skip", saved
    # One JSON line per cell, written as each finished.
    lines = cpu_matrix["jsonl"].read_text().splitlines()
    assert sorted(json.loads(x)["key"] for x in lines) == sorted(c["key"] for c in data["cells"])
    # Accelerate's path equals the native torchao conversion on the same seed: both run under bf16 autocast.
    acc = [c for c in fp8 if c["result"]["spec"]["entry"] == "accelerator" and c["status"] != "skip"]
    assert len(acc) >= 2
    for c in acc:
        v = next(v for v in c["verdicts"] if v["check"] == "native_agreement")
        assert v["level"] == "ok" and v["value"] == 0.0, v


def test_numerics_and_divergence_in_text_and_markdown(cpu_matrix, tmp_path) -> None:
    out = tmp_path / "again.jsonl"
    shutil.copy(cpu_matrix["jsonl"], out)
    for fmt, sep in (("text", "  "), ("md", "|")):
        p = fp8doctor("matrix", *CPU_MATRIX_ARGS, "--out", str(out), "--resume", "--format", fmt, cwd=tmp_path)
        assert p.returncode == 1, p.stdout + p.stderr  # the two cells whose FP8 weights never train
        assert SENTENCE in p.stdout
        assert "grad norm vs bf16" in p.stdout and "min SQNR dB" in p.stdout and "run s" in p.stdout
        assert "FP8 numerics (worst sample per layer" in p.stdout
        assert "torchao:tensorwise via accelerator: ok: 13/13 FP8 layers sampled every 20 calls; min SQNR" \
            in p.stdout
        row = next(line for line in p.stdout.splitlines() if "torchao:tensorwise" in line and "accelerator" in line
                   and "identical" in line)
        assert sep in row


def test_te_cells_are_listed_as_skipped_with_the_doctors_reason(tmp_path) -> None:
    p = fp8doctor("matrix", "--backend", "te", "--out", str(tmp_path / "te.jsonl"), cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("skip [") == len(TE_RECIPES) * len(ENTRIES) + len(ENTRIES)
    assert "Transformer Engine is not installed" in p.stdout and "No CUDA GPU is visible" in p.stdout
    assert "0 pass, 0 warn, 0 fail" in p.stdout
    assert len((tmp_path / "te.jsonl").read_text().splitlines()) == len(TE_RECIPES) * len(ENTRIES) + len(ENTRIES)


def test_resume_reuses_measured_cells_and_reruns_a_truncated_one(cpu_matrix, tmp_path) -> None:
    out = tmp_path / "resume.jsonl"
    shutil.copy(cpu_matrix["jsonl"], out)
    sel = ["--backend", "torchao", "--recipe", "tensorwise", "--entry", "native", "--entry", "accelerator",
           "--steps", "8"]
    keep = [json.loads(x) for x in out.read_text().splitlines()]
    wanted = [r for r in keep if r["result"]["spec"]["entry"] in ("native", "accelerator")
              and r["result"]["spec"]["recipe"] in ("tensorwise", "bf16")]
    assert len(wanted) == 4
    # The file as a killed matrix leaves it: three complete lines, then half of the fourth.
    text = "".join(json.dumps(r) + "\n" for r in wanted[:3]) + json.dumps(wanted[3])[:200]
    out.write_text(text)
    p = fp8doctor("matrix", *sel, "--out", str(out), "--resume", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "truncated last line ignored" in p.stdout
    assert p.stdout.count("(resumed)") == 3
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[4])["key"] == wanted[3]["key"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--recipe", "fp4"], "unknown recipe"),
        (["--backend", "msamp"], "invalid choice"),
        (["--steps", "1"], "--steps must be at least 2"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--resume"], "--resume needs --out"),
        (["--out", "/proc/fp8doctor/x.jsonl"], "cannot write results to /proc/fp8doctor/x.jsonl"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args, needle, tmp_path) -> None:
    p = fp8doctor("matrix", *args, cwd=tmp_path, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not os.listdir(tmp_path) or args[0] == "--out"
