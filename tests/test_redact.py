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
from fp8doctor.redact import REDACTED, redact
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


# Round two (issue 14): (input, what must not survive, what must stay visible).
ROUND_TWO = [
    ("https://hf_AbCdEfGhIjKlMnOpQrStUv@hub.example.com/x", "hf_AbCd", "hub.example.com/x"),
    ("https://tokenonlyuser@hub.example.com/x", "tokenonlyuser", "@hub.example.com/x"),
    ("https://alice:pa/ss/wd@mirror.example.com/simple", "pa/ss", "mirror.example.com/simple"),
    ("https:/alice:pw123@host/c.yaml", "pw123", "host/c.yaml"),  # a URL squashed by a path normalisation
    ("/data/x_hf_AbCdEfGhIjKlMnOpQrStUvWx_copy/cache", "AbCdEf", "/data/x_"),
    ("train.py --auth s3cr3tval --author bob", "s3cr3tval", "--author bob"),
    ("env HF_TOKEN=s3cr3tval python train.py", "s3cr3tval", "python train.py"),
    ("https://hub.example.com/x?access_token=s3cr3tval&rev=main", "s3cr3tval", "rev=main"),
    ("curl -H 'Authorization: Bearer s3cr3tval' https://h", "s3cr3tval", "https://h"),
    ("--password 'two words' --max_new_tokens 5", "two words", "--max_new_tokens 5"),
]


@pytest.mark.parametrize(("text", "gone", "kept"), ROUND_TWO, ids=[c[0][:30] for c in ROUND_TWO])
def test_round_two_cases(text: str, gone: str, kept: str) -> None:
    out = redact(text)
    assert gone not in out and kept in out and REDACTED in out, out
    argv = redact(text.split(" "))  # the same as a command line
    assert gone.split(" ")[0] not in " ".join(argv), argv


def test_paths_and_urls_without_credentials_are_left_alone() -> None:
    for text in ("https://host/@scope/pkg", "http://host:8080/p", "PATH=/usr/bin:/home/me@work/bin", "C:/x/y",
                 "task-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "--tokenizer_name x --max_new_tokens 5",
                 "tokens_per_s=3 key=k"):
        assert redact(text) == text
