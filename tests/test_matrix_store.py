"""JSON-lines store: one fsynced line per cell, secrets scrubbed, truncated/corrupt lines reported not fatal."""

from __future__ import annotations

import json

from fp8doctor.matrix import store
from fp8doctor.redact import REDACTED, redact


def rec(key: str, outcome: str = "finished", **extra):
    return store.make_record(key, "fp8", {"outcome": outcome, "losses": [1.0, float("nan")], **extra})


def test_append_and_load_round_trip(tmp_path) -> None:
    path = tmp_path / "sub" / "m.jsonl"
    s = store.ResultStore(path)
    s.open_for_append()
    s.append(rec("a"))
    s.append(rec("b", "skipped"))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["schema"] == store.RECORD_SCHEMA for x in lines)
    loaded = store.load(path)
    assert set(loaded.records) == {"a", "b"} and loaded.problems == []
    assert loaded.records["a"]["result"]["losses"] == [1.0, "nan"]  # strict JSON: NaN stored as a string
    assert store.reusable_keys(loaded) == {"a"}  # a skipped cell is planned again, never reused


def test_truncated_last_line_is_reported_and_append_starts_a_new_line(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    store.write_all(path, [rec("a"), rec("b")])
    full = path.read_bytes()
    path.write_bytes(full[: len(full) - 25])  # killed mid-write
    loaded = store.load(path)
    assert set(loaded.records) == {"a"}
    assert len(loaded.problems) == 1 and "m.jsonl:2: truncated last line ignored" in loaded.problems[0]
    s = store.ResultStore(path)
    s.open_for_append()
    s.append(rec("c"))
    again = store.load(path)
    assert set(again.records) == {"a", "c"}
    assert "unreadable line" in again.problems[0]


def test_corrupt_lines_anywhere_do_not_crash(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"key": "x"}\n\xff\xfe garbage\n[1, 2]\n' + json.dumps(rec("ok")).encode() + b"\n")
    loaded = store.load(path)
    assert list(loaded.records) == ["ok"]
    assert len(loaded.problems) == 3
    assert store.load(tmp_path / "absent.jsonl").records == {}


def test_secrets_are_scrubbed_but_metric_names_are_kept(tmp_path) -> None:
    r = store.make_record("k", "fp8", {
        "spec": {"env": {"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz123456", "ACCELERATE_MIXED_PRECISION": "fp8"}},
        "tokens_per_s": 1234.5,
        "error": {"message": "cannot reach https://user:pa55word@example.com/x"},
    })
    text = json.dumps(r)
    assert "hf_abcdefghijklmnopqrstuvwxyz123456" not in text and "pa55word" not in text
    assert r["result"]["spec"]["env"]["HF_TOKEN"] == REDACTED
    assert r["result"]["spec"]["env"]["ACCELERATE_MIXED_PRECISION"] == "fp8"
    assert r["result"]["tokens_per_s"] == 1234.5 and r["key"] == "k"


def test_uppercase_env_names_anywhere_are_redacted_by_name() -> None:
    out = redact({"facts": {"environ": {"WANDB_API_KEY": "abc123", "NVTE_FP8": "1"}}, "key": "k"})
    assert out == {"facts": {"environ": {"WANDB_API_KEY": REDACTED, "NVTE_FP8": "1"}}, "key": "k"}
