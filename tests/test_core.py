"""The coordinator's core: findings, capability checks, eligibility rules against Accelerate's real conversion."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fp8doctor.findings import Finding, Level, exit_code, run_checks, summary_line
from fp8doctor.knowledge.capability import backend_available, fp8_family_supported, te_recipe_family


def test_crashing_check_becomes_error_finding() -> None:
    def good(facts):
        return Finding("a", Level.OK, "fine")

    def bad(facts):
        return facts["missing"]

    findings = run_checks([good, bad], {})
    assert [f.level for f in findings] == [Level.OK, Level.ERROR]
    assert "KeyError" in findings[1].title and findings[1].id == "check-crashed.bad"
    assert exit_code(findings) == 1
    assert summary_line(findings).startswith("problems found: 1 ok, 0 warn, 0 fail, 1 error")


def test_exit_code_ignores_warn_and_skip() -> None:
    assert exit_code([Finding("w", Level.WARN, "w"), Finding("s", Level.SKIP, "s")]) == 0
    assert exit_code([Finding("f", Level.FAIL, "f")]) == 1


@pytest.mark.parametrize(
    ("cc", "family", "ok"),
    [
        (None, "per-tensor", False),
        ((8, 0), "per-tensor", False),
        ((8, 9), "per-tensor", True),
        ((8, 9), "block", False),
        ((9, 0), "block", True),
        ((9, 0), "mxfp8", False),
        ((10, 0), "mxfp8", True),
        ((12, 0), "mxfp8", False),
        ((10, 0), "nvfp4", True),
    ],
)
def test_fp8_family_supported(cc, family, ok) -> None:
    supported, reason = fp8_family_supported(cc, family)
    assert supported is ok
    assert reason.endswith(".") and len(reason.split()) > 5
    if cc is None:
        assert "No CUDA GPU" in reason


def test_te_recipe_family_and_backend_available() -> None:
    assert te_recipe_family("delayed_hybrid") == "per-tensor"
    assert te_recipe_family("block") == "block"
    ok, reason = backend_available("te", {"transformer-engine": None})
    assert not ok and "not installed" in reason
    ok, reason = backend_available("te", {"transformer-engine": "2.9.0"}, te_import_error="libcudart.so.12: not found")
    assert not ok and "libcudart" in reason
    assert backend_available("torchao", {"torchao": "0.18.0"})[0]


def test_accelerate_te_rule_stops_at_first_indivisible_sibling() -> None:
    torch = pytest.importorskip("torch")
    from fp8doctor.observe import eligible_linear_names

    parent = torch.nn.Sequential(
        torch.nn.Linear(16, 16), torch.nn.Linear(16, 10), torch.nn.Linear(16, 16),
        torch.nn.Sequential(torch.nn.Linear(32, 32)),
    )
    model = torch.nn.Sequential(parent, torch.nn.Linear(32, 48))
    assert eligible_linear_names(model, "accelerate-te") == ["0.0", "1"]
    assert eligible_linear_names(model, "all-div16") == ["0.0", "0.2", "0.3.0", "1"]
    assert eligible_linear_names(model, "accelerate-ao") == ["0.2", "0.3.0"]


_CONVERT = textwrap.dedent(
    """
    import json, torch
    from accelerate import Accelerator
    from accelerate.utils import AORecipeKwargs
    from torchao.float8 import Float8LinearConfig
    from transformers import LlamaConfig, LlamaForCausalLM
    from fp8doctor.observe import eligible_linear_names, fp8_layer_names, FP8ForwardCounter, fp8_active
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=120, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    eligible = eligible_linear_names(model, "accelerate-ao")
    acc = Accelerator(mixed_precision="fp8", kwargs_handlers=[AORecipeKwargs(config=Float8LinearConfig(emulate=True))])
    model = acc.prepare(model)
    counter = FP8ForwardCounter().attach(model)
    x = torch.randint(0, 256, (2, 16))
    model(input_ids=x, labels=x).loss.backward()
    layers = fp8_layer_names(model)
    print(json.dumps({"eligible": eligible, "fp8": layers, "active": fp8_active(len(layers), counter.to_dict())}))
    """
)


def test_accelerate_ao_rule_matches_real_accelerate_conversion() -> None:
    """intermediate_size 120 is not divisible by 16: every MLP Linear must be left out, by both."""
    proc = subprocess.run([sys.executable, "-c", _CONVERT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["fp8"] == out["eligible"]
    assert not any("mlp" in name for name in out["fp8"])
    assert "model.layers.0.self_attn.q_proj" not in out["fp8"] and "model.layers.1.self_attn.o_proj" in out["fp8"]
    assert out["active"] is True


@pytest.mark.parametrize(
    "name",
    ["HF_TOKEN", "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "BAR_KEY", "MY_PASSWORD",
     "hubToken", "DBPASSWORD", "GITHUB_PAT", "apiKey"],
)
def test_secret_names_are_recognised(name: str) -> None:
    from fp8doctor.redact import REDACTED, is_secret_name, redact

    assert is_secret_name(name)
    assert redact({name: "v"}) == {name: REDACTED}


@pytest.mark.parametrize(
    "name", ["tokens_per_s", "tokenizer_name", "max_new_tokens", "num_key_value_heads", "ACCELERATE_MIXED_PRECISION"]
)
def test_measurements_that_look_like_secrets_stay_visible(name: str) -> None:
    from fp8doctor.redact import redact

    assert redact({name: 12.5}) == {name: 12.5}
