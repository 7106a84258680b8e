"""No secret reaches any output format: env values with secret-looking names, tokens inside config values,
and user:password@ inside URLs, through the renderer and through the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from env_facts_helpers import cfg, make_facts

from fp8doctor.findings import Finding, Level
from fp8doctor.redact import REDACTED
from fp8doctor.render.findings import FORMATS, render

TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
PASSWORD = "s3cr3t-pa55"
SECRET_ENV = {
    "ACCELERATE_HUB_TOKEN": "plain-value-without-shape",
    "NCCL_IB_PASSWORD": PASSWORD,
    "PYTORCH_SOME_URL": f"https://alice:{PASSWORD}@mirror.example.com/simple",
    "ACCELERATE_MIXED_PRECISION": "fp8",
}
SECRETS = ("plain-value-without-shape", PASSWORD, TOKEN)


@pytest.mark.parametrize("fmt", FORMATS)
def test_renderer_redacts_every_format(fmt: str) -> None:
    facts = make_facts(env=SECRET_ENV, configs=[cfg("training_args", {
        "output_dir": "o", "hub_token": TOKEN, "hub_model_id": f"see {TOKEN}", "push_to_hub": True})])
    findings = [Finding("x", Level.FAIL, f"title with {TOKEN}", f"detail https://bob:{PASSWORD}@h/x", "fix")]
    out = render(findings, facts, fmt)
    for secret in SECRETS:
        assert secret not in out, (fmt, secret)
    assert REDACTED in out and "mirror.example.com" in out


def test_command_redacts_env_and_config(tmp_path: Path) -> None:
    conf = tmp_path / "args.json"
    conf.write_text(json.dumps({"output_dir": "o", "bf16": True, "hub_token": TOKEN,
                                "hub_model_id": f"https://carol:{PASSWORD}@hub.example.com/m"}))
    env = {**os.environ, **SECRET_ENV, "HF_HOME": str(tmp_path / "hf")}
    for fmt in FORMATS:
        proc = subprocess.run([sys.executable, "-m", "fp8doctor", "env", "--config", str(conf), "--format", fmt],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode in (0, 1), proc.stderr
        for secret in SECRETS:
            assert secret not in proc.stdout + proc.stderr, (fmt, secret)
        assert REDACTED in proc.stdout
