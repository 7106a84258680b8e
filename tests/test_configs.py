"""Config reading: every bad file is one UsageError line; kinds are detected by content."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fp8doctor.configs import MAX_BYTES, load_config, read_mapping
from fp8doctor.system.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llamafactory_te_bf16.yaml", "llamafactory"),
        ("accelerate_fp8_te.yaml", "accelerate"),
        ("accelerate_fp8_ao.yaml", "accelerate"),
        ("deepspeed_fp8.json", "deepspeed"),
    ],
)
def test_repro_configs_kinds(name: str, expected: str) -> None:
    assert load_config(REPO / "repro_configs" / name)["kind"] == expected


def test_reference_yaml_is_exactly_the_reports() -> None:
    data = load_config(REPO / "repro_configs" / "llamafactory_te_bf16.yaml")["data"]
    assert data == {
        "model_name_or_path": "Qwen/Qwen2.5-7B", "stage": "sft", "do_train": True, "finetuning_type": "full",
        "fp8": True, "fp8_backend": "te", "dataset": "alpaca_en_demo", "template": "qwen", "cutoff_len": 512,
        "max_samples": 10, "per_device_train_batch_size": 1, "bf16": True, "output_dir": "test_fp8_output",
    }


def test_training_args_json(tmp_path: Path) -> None:
    p = write(tmp_path, "args.json", '{"output_dir": "out", "bf16": true, "learning_rate": 1e-5}')
    assert load_config(p)["kind"] == "training_args"
    q = write(tmp_path, "args2.json", '{"output_dir": "o", "gradient_accumulation_steps": 4, "deepspeed": "ds.json"}')
    assert load_config(q)["kind"] == "training_args"
    ds = write(tmp_path, "ds.json", '{"gradient_accumulation_steps": "auto", "fp16": {"enabled": "auto"}}')
    assert load_config(ds)["kind"] == "deepspeed"


BAD = {
    "empty": ("e.yaml", "  \n", "empty"),
    "comments": ("c.yaml", "# nothing\n", "no settings"),
    "binary": ("b.yaml", b"\x7fELF\x00\x01\x02", "binary"),
    "not-utf8": ("n.yaml", b"\xff\xfe\xfa bf16: true", "UTF-8"),
    "malformed-yaml": ("m.yaml", "fp8: [true\nbf16: true\n", "malformed YAML at line"),
    "malformed-json": ("m.json", '{"fp8": true,}', "malformed JSON at line 1"),
    "hostile": ("h.yaml", "x: !!python/object/apply:os.system ['echo pwned']\n", "refused unsafe"),
    "list": ("l.yaml", "- fp8\n- bf16\n", "top level must be a mapping"),
    "scalar": ("s.yaml", "fp8\n", "top level must be a mapping"),
    "deep-yaml": ("d.yaml", "a: " + "[" * 1500 + "]" * 1500 + "\n", "nested"),
    "deep-json": ("d.json", '{"a": ' + "[" * 100000 + "]" * 100000 + "}", "nested"),
    "deep-ok-parse": ("d2.yaml", "a: " + "[" * 60 + "]" * 60 + "\n", "nested deeper than"),
    "alias-bomb": ("bomb.yaml", "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)), "too large"),
    "unknown-kind": ("u.yaml", "colour: blue\nsize: 3\n", "cannot tell what kind"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_are_one_clear_line(tmp_path: Path, case: str) -> None:
    name, content, needle = BAD[case]
    p = write(tmp_path, name, content)
    with pytest.raises(UsageError) as info:
        load_config(p)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg and str(p) in msg


def test_missing_directory_huge(tmp_path: Path) -> None:
    for path, needle in ((tmp_path / "nope.yaml", "no such file"), (tmp_path, "is a directory")):
        with pytest.raises(UsageError, match=needle):
            read_mapping(path)
    if Path("/proc/self/mem").exists():  # exists, is a file, but reading it fails with EIO
        with pytest.raises(UsageError, match="cannot read it"):
            read_mapping("/proc/self/mem")
    big = write(tmp_path, "big.yaml", "a: " + "x" * (MAX_BYTES + 10) + "\n")
    with pytest.raises(UsageError, match="limit"):
        read_mapping(big)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable(tmp_path: Path) -> None:
    p = write(tmp_path, "secret.yaml", "fp8: true\n")
    p.chmod(0)
    with pytest.raises(UsageError, match="permission denied"):
        read_mapping(p)


def test_expect_accelerate_rejects_other_kind(tmp_path: Path) -> None:
    p = write(tmp_path, "lf.yaml", "stage: sft\nfp8: true\n")
    with pytest.raises(UsageError, match="expected an Accelerate config"):
        load_config(p, expect="accelerate")
    q = write(tmp_path, "acc.yaml", "mixed_precision: fp8\n")
    assert load_config(q, expect="accelerate")["kind"] == "accelerate"


def test_yaml_dates_become_strings(tmp_path: Path) -> None:
    p = write(tmp_path, "t.yaml", "output_dir: out\nrun_date: 2025-11-16\n1: one\n")
    data = load_config(p)["data"]
    assert data["run_date"] == "2025-11-16" and data["1"] == "one"
