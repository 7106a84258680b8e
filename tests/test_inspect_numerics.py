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
from torchao.float8 import Float8LinearConfig, convert_to_float8_training, float8_utils

from fp8doctor.knowledge.numerics import SQNR_MIN_DB
from fp8doctor.knowledge.te_releases import first_release_with_autocast
from fp8doctor.numerics import NumericsSampler, fp8_cast, fp8_scale, sampled_backend, sqnr_db, summary
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
    assert row["input_amax_max"] == 1e4 and row["backend"] == "torchao"
    sampler.detach()
    model(x)
    assert sampler.to_dict()["0"]["calls"] == 3


def test_numerics_every_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    from fp8doctor import cli

    assert cli.main(["watch", "--numerics", "--numerics-every", "0", "--", "true"]) == 2
    assert "--numerics-every must be between 1" in capsys.readouterr().err


def test_the_plain_torch_cast_and_sqnr_are_torchaos() -> None:
    torch.manual_seed(0)
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        for t in (torch.randn(64, 64) * 3e3, torch.randn(64, 64) * 1e-5, torch.zeros(4, 4)):
            amax = t.abs().max()
            assert torch.equal(fp8_scale(amax, dtype), float8_utils.amax_to_scale(amax, dtype))
            scaled = t * fp8_scale(amax, dtype) * 1.5  # past the format's maximum: the saturation
            assert torch.equal(fp8_cast(scaled, dtype).float(), float8_utils.to_fp8_saturated(scaled, dtype).float())
            out = fp8_cast(scaled, dtype).float()
            if amax > 0:
                assert sqnr_db(scaled, out) == pytest.approx(float(float8_utils.compute_error(scaled, out)), rel=1e-6)


def test_the_sampled_layers_are_fp8_gemms_only() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Linear(32, 32))
    convert_to_float8_training(model, config=Float8LinearConfig(emulate=True))
    assert sampled_backend(model[0]) == "torchao" and sampled_backend(torch.nn.Linear(2, 2)) is None
    # FSDP2's fully_shard swaps the class for a generated subclass: still sampled
    model[1].__class__ = type("FSDPFloat8Linear", (type(model[1]),), {})
    assert sampled_backend(model[1]) == "torchao"
    assert sorted(NumericsSampler(1).attach(model)._calls) == ["0", "1"]


def test_keep_in_bf16_forms_follow_the_layers_backend() -> None:
    low = {"samples": 1, "sqnr_db_min": 3.0}
    te = summary({"a": {**low, "backend": "te"}, "b": {"samples": 1, "sqnr_db_min": 40.0, "backend": "te"}}, 20)
    assert te["candidates"] == ["a"] and list(te["config"]) == ["transformer_engine"]
    form = te["config"]["transformer_engine"]
    assert "autocast(enabled=False)" in form and "'a'" in form and "not run here" in form
    assert f"before TE {first_release_with_autocast('autocast')}" in form
    assert first_release_with_autocast("autocast") == "2.9.0"  # the static TE lab's reading (lab/te/README.md)
    ao = summary({"a": {**low, "backend": "torchao"}}, 20)
    assert list(ao["config"]) == ["accelerate", "torchao"]
    assert summary({"b": {"samples": 1, "sqnr_db_min": 40.0}}, 20)["config"] is None
    assert summary({"b": {"samples": 1, "sqnr_db_min": 25.0}}, 20)["candidates"] == []  # torchao: sqnr >= 25 passes
    both = summary({"a": {**low, "backend": "torchao"}, "c": {**low, "backend": "te"}}, 20)
    assert list(both["config"]) == ["accelerate", "torchao", "transformer_engine"]
    assert "'c'" not in both["config"]["torchao"] and "'a'" not in both["config"]["transformer_engine"]
    assert summary({"x": 5, "y": None}, 20)["candidates"] == []  # a record's row that is not an object
    odd = summary({"a": {**low, "backend": "jax"}}, 20)  # a record's unknown backend reads as torchao
    assert list(odd["config"]) == ["accelerate", "torchao"]
    # NVFP4 is a 4-bit format: its rows are reported, not judged by an FP8 GEMM's threshold
    assert summary({"a": {**low, "backend": "te", "recipe": "NVFP4BlockScaling"}}, 20)["candidates"] == []


def test_fp8_layers_the_sampler_cannot_read_are_named_not_passed() -> None:
    from fp8doctor.findings import Level
    from fp8doctor.matrix.divergence import check_numerics
    from fp8doctor.render.numerics import candidate_lines

    te_blocks = {"h.0.ln_mlp": "LayerNormMLP", "h.0.qkv": "LayerNormLinear", "h.1.qkv": "LayerNormLinear"}
    none = summary({}, 20, te_blocks)
    lines = candidate_lines(none)
    assert lines[0] == "no FP8 layer was sampled" and not any("below" in line for line in lines)
    assert lines[1].startswith("not sampled: 3 FP8 layers (2 LayerNormLinear, 1 LayerNormMLP, e.g. h.0.ln_mlp)")
    v = check_numerics({"numerics": {"every": 20, "layers": {}, "unsampled": te_blocks}})
    assert v.level is Level.SKIP and "0/3 FP8 layers sampled" in v.detail
    row = {"samples": 1, "sqnr_db_min": 30.0, "backend": "te"}
    some = summary({"h.2.proj": row}, 20, {"h.0.ln_mlp": "LayerNormMLP"})
    assert candidate_lines(some) == ["no sampled layer below 25 dB SQNR (" + some["source"] + ")",
                                     "not sampled: 1 FP8 layer (1 LayerNormMLP, e.g. h.0.ln_mlp): the sampler reads "
                                     "torchao Float8Linear and Transformer Engine Linear layers only"]
    v = check_numerics({"numerics": {"every": 20, "layers": {"h.2.proj": row}, "unsampled": {"x": "LayerNormMLP"}}})
    assert v.level is Level.OK and "1/2 FP8 layers sampled" in v.detail and "not sampled: 1 FP8 layer" in v.detail
    assert summary({}, 20, "not a dict")["unsampled"] == {}  # a record is untrusted input


@pytest.mark.gpu
@pytest.mark.te
def test_te_layers_are_sampled_on_the_gpu() -> None:
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "watch", "--numerics", "--numerics-every", "5",
                        "--format", "json", "--", sys.executable, "numerics_script.py", "te"], capture_output=True,
                       text=True, env=_env(), cwd=SCRIPTS, timeout=600)
    assert p.stdout.startswith("{"), p.stderr[-3000:]
    rank = json.loads(p.stdout)["ranks"][0]
    assert rank["verdict"] == "fp8-active", rank.get("reason")
    n = rank["model"]["numerics"]
    assert {"1", "3", "4"} <= set(n["layers"]) and all(r["backend"] == "te" for r in n["layers"].values())
    # from each layer's second call (TE's delayed scaling has no amax history on the first): calls 1, 6, 11, 16
    assert all(r["samples"] == 4 and "error" not in r for r in n["layers"].values()), n["layers"]
    assert {r.get("recipe") for r in n["layers"].values()} == {"DelayedScaling"}  # Accelerate's TE default
    assert n["layers"]["3"]["sqnr_db_min"] < SQNR_MIN_DB and "3" in n["candidates"]
    assert all(n["layers"][k]["sqnr_db_min"] >= SQNR_MIN_DB for k in ("1", "4"))
    assert list(n["config"]) == ["transformer_engine"]


def test_sampler_rows_hold_the_layers_real_values() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Linear(64, 32))
    with torch.no_grad():
        model[0].bias.fill_(50.0)  # a bias the reference must add: without it the SQNR would collapse
    convert_to_float8_training(model, config=Float8LinearConfig(emulate=True))
    sampler = NumericsSampler(every=2).attach(model)
    assert sampler.unsampled == {}
    x = torch.randn(2, 4, 32)  # (batch, tokens, features): rows are batch x tokens
    for _ in range(4):
        model(x)
    model[0](input=x)  # a keyword input at a sampled call: the hook sees no positional input, and says so
    rows = sampler.to_dict()
    assert set(rows) == {"0", "1"} and rows["1"]["calls"] == 4 and rows["1"]["samples"] == 2
    assert rows["0"]["error"] == "IndexError: tuple index out of range" and rows["0"]["calls"] == 5
    model[0](x)
    model[0](x)  # a sample after the failed one still counts
    assert sampler.to_dict()["0"]["samples"] == 3
    for name, inp in (("0", x), ("1", model[0](x).detach())):
        row = rows[name]
        assert 25 < row["sqnr_db_min"] < float("inf"), row
        assert row["input_amax_max"] == pytest.approx(float(inp.abs().max()), rel=1e-6)
        assert row["weight_amax_max"] == pytest.approx(float(model[int(name)].weight.detach().abs().max()), rel=1e-6)
        assert row["input_saturated_max"] == 0.0 and row["weight_saturated_max"] == 0.0
        assert row["input_underflow_max"] < 0.01 and row["backend"] == "torchao"


def test_the_printed_keep_in_bf16_forms_run() -> None:
    """The torchao and Accelerate forms of the config, executed as printed (the Accelerate one with a real
    Float8LinearConfig for its `config=...`): the named layer stays a plain Linear, the others convert."""
    import functools

    import accelerate
    import accelerate.utils.ao
    from accelerate import Accelerator
    from accelerate.utils import AORecipeKwargs

    from fp8doctor.knowledge.numerics import keep_in_bf16_config

    def model() -> torch.nn.Sequential:
        return torch.nn.Sequential(*(torch.nn.Linear(64, 64) for _ in range(5)))

    def kinds(m: torch.nn.Module) -> list[str]:
        return [type(layer).__name__ for layer in m]

    forms = keep_in_bf16_config({"torchao": ["2"]})
    m = model()
    exec(forms["torchao"], {"convert_to_float8_training": convert_to_float8_training, "model": m})  # noqa: S102
    assert kinds(m) == ["Float8Linear", "Float8Linear", "Linear", "Float8Linear", "Float8Linear"]
    m = model()
    scope = {"AORecipeKwargs": AORecipeKwargs, "functools": functools, "accelerate": accelerate, "model": m}
    handler = eval(forms["accelerate"].replace("config=...", "config=config"),  # noqa: S307
                   {**scope, "config": Float8LinearConfig(emulate=True)})
    prepared = Accelerator(mixed_precision="fp8", kwargs_handlers=[handler]).prepare(m)
    assert kinds(prepared) == ["Linear", "Float8Linear", "Linear", "Float8Linear", "Linear"]
