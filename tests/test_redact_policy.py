"""Round three (issue 20): redaction as a policy. Signature and credential query parameters of presigned / SAS
URLs, options named by any secret word (`--wandb_key`), private key blocks anywhere, and the config values that
are not FP8-relevant summarised instead of dumped."""

from __future__ import annotations

import pytest

from fp8doctor.redact import REDACTED, public_facts, redact

PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAPLANTEDPEMBODY\n-----END OPENSSH PRIVATE KEY-----"


@pytest.mark.parametrize("text, gone", [
    ("https://acct.blob.core.windows.net/c/b.bin?sv=2022-11-02&se=2026&sp=r&sig=AbC%2Bd3SasSig", "AbC%2Bd3SasSig"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Signature=deadbeef99", "deadbeef99"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIDEXAMPLE%2F2026&x=1", "AKIDEXAMPLE"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Security-Token=FQoGZXIvYXdzEJr&x=1", "FQoGZXIvYXdzEJr"),
    ("https://storage.googleapis.com/b/o?X-Goog-Signature=a1b2c3d4e5", "a1b2c3d4e5"),
    ("https://maps.invalid/api?key=AbcDefGhi123", "AbcDefGhi123"),
    ("https://x.invalid/?x_amz_signature=underscored77", "underscored77"),
    ("https://x.invalid/?xAmzSignature=camel88", "camel88"),
    ("download failed: https://cdn.invalid/f?Signature=cfsig99&Key-Pair-Id=K1", "cfsig99"),
    ("python t.py --wandb_key wkey123 --lr 1", "wkey123"),
    ("python t.py --wandb-key=wkey456", "wkey456"),
    ("python t.py --WandbKey wkey789", "wkey789"),
    ("python t.py --sas-sig s1g", "s1g"),
    (f"config value: {PEM}\nnext line", "PLANTEDPEMBODY"),
    ("cut off -----BEGIN RSA PRIVATE KEY-----\nMIIEPLANTEDCUT", "MIIEPLANTEDCUT"),
    ("unknown mode: -----begin rsa private key-----\nmiieplantedlower\n-----end rsa private key-----",
     "miieplantedlower"),
    ("repr: '-----BEGIN PRIVATE KEY-----\\nMIIEvPLANTEDESC\\n-----END PRIVATE KEY-----'", "PLANTEDESC"),
])
def test_new_secret_shapes_are_redacted(text: str, gone: str) -> None:
    out = redact(text)
    assert gone not in out and REDACTED in out, out


def test_argv_options_by_policy() -> None:
    argv = ["python", "t.py", "--wandb_key", "v1", "--X-Amz-Signature", "v2", "--max_new_tokens", "5",
            "--num_key_value_heads", "4", "--tokenizer_name", "tok", "--author", "me", PEM]
    out = redact(argv)
    assert out[3] == REDACTED and out[5] == REDACTED
    assert out[6:14] == argv[6:14]  # names that only look like secret words keep their values
    assert "PLANTEDPEMBODY" not in out[14]


def test_harmless_text_is_kept() -> None:
    for text in ("https://host/p?sv=2022&se=2026&sp=r", "tokens_per_s=3 key=k", "-----BEGIN CERTIFICATE-----\nMII",
                 "-----BEGIN PUBLIC KEY-----\nMIIBIj\n-----END PUBLIC KEY-----", "a ----- b -----BEGIN"):
        assert redact(text) == text


def test_config_values_not_fp8_relevant_are_summarised() -> None:
    data = {"fp8": True, "fp8_backend": "torchao", "bf16": True, "learning_rate": 1e-5,
            "notes": f"ssh material {PEM}", "dataset_dir": "/data/private", "tags": ["a", "b"],
            "model_name_or_path": "https://u:pw@h.invalid/m", "deepspeed": "ds.json",
            "fp8_config": {"backend": "AO"}}
    facts = {"configs": [{"path": "c.yaml", "kind": "llamafactory", "label": "LF", "data": data}],
             "accelerate_config": {"path": "a.yaml", "exists": True, "data": {"mixed_precision": "fp8",
                                                                                  "comment": "long text"}}}
    out = public_facts(facts)
    got = out["configs"][0]["data"]
    assert got["fp8"] is True and got["fp8_backend"] == "torchao" and got["fp8_config"] == {"backend": "AO"}
    assert got["learning_rate"] == 1e-5 and got["deepspeed"] == "ds.json"
    assert got["notes"] == f"<text, {len(data['notes'])} characters>" and got["tags"] == "<list, 2 items>"
    assert got["dataset_dir"].startswith("<text,")
    assert "pw" not in got["model_name_or_path"] and "h.invalid" in got["model_name_or_path"]
    assert out["accelerate_config"]["data"] == {"mixed_precision": "fp8", "comment": "<text, 9 characters>"}
    assert facts["configs"][0]["data"]["notes"].startswith("ssh")  # the rules still see the original
