"""Bad input, table-driven: every case is a real `fp8doctor` process that must end with one clear line on
stderr, exit code 2 and no traceback. Config files live in tests/bad_input/; huge, binary and deeply nested
ones are generated in tmp_path. Invalid ACCELERATE_FP8_* values are findings of `fp8doctor env` (exit 1), and
each one is checked against the installed Accelerate's own parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fp8doctor.rules.environ import VALIDATORS

CORPUS = Path(__file__).parent / "bad_input"

# (file in tests/bad_input, stable substring of the error line)
CORPUS_CASES = [
    ("malformed.yaml", "malformed YAML at line 4"),
    ("malformed.json", "malformed JSON at line 3"),
    ("tab_indent.yaml", "malformed YAML at line 2"),
    ("empty.yaml", "file is empty"),
    ("comments_only.yaml", "file holds no settings"),
    ("hostile_python_object.yaml", "refused unsafe or unknown YAML tag"),
    ("hostile_apply.yaml", "refused unsafe or unknown YAML tag"),
    ("top_level_list.yaml", "top level must be a mapping of settings, found a list"),
    ("top_level_scalar.yaml", "top level must be a mapping of settings, found a str"),
    ("unknown_kind.yaml", "cannot tell what kind of config this is"),
    ("alias_bomb.yaml", "config is too large once expanded"),
    ("wrong_type_fp8.yaml", "`fp8` must be true or false, found str 'maybe'"),
    ("wrong_type_bf16.yaml", "`bf16` must be true or false, found list"),
    ("wrong_type_fp8_backend.yaml", "`fp8_backend` must be a string, found int"),
    ("wrong_type_mixed_precision.yaml", "`mixed_precision` must be a string, found list"),
    ("wrong_type_fp8_config.yaml", "`fp8_config` must be a mapping of settings, found str"),
    ("accelerate_unknown_key.yaml", "unknown Accelerate config key(s) fp8_confg"),
]
ACCELERATE_KIND = {"wrong_type_mixed_precision.yaml", "wrong_type_fp8_config.yaml", "accelerate_unknown_key.yaml"}


def generated(tmp: Path) -> list[tuple[str, bytes, str]]:
    """(file name, content, expected error substring) for inputs too big or too odd to commit."""
    nested = "stage: sft\nx: " + "{a: " * 40 + "1" + "}" * 40 + "\n"
    return [
        ("huge.yaml", b"stage: sft\n" + b"# padding\n" * 110_000, "over the 1048576-byte limit"),
        ("binary.yaml", b"stage: sft\n\x00\x01\x02\xff" * 64, "looks like a binary file"),
        ("latin1.yaml", "stage: sft\ntemplate: caf\u00e9\n".encode("latin-1"), "is not UTF-8 text"),
        ("nested.yaml", nested.encode(), "nested deeper than 32 levels"),
        ("recursion.yaml", b"x: " + b"[" * 60_000, "config is"),  # too deep to parse / malformed: never a crash
        ("random.json", os.urandom(4096).replace(b"\x00", b"\x01"), ""),
    ]


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without FP8 settings, with a HOME that has no Accelerate config."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "FP8DOCTOR_", "HF_HOME", "XDG_CACHE_HOME"))}
    env["HOME"] = str(tmp)
    env.update(extra)
    return env


def fp8doctor(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_usage_error(p: subprocess.CompletedProcess, expected: str) -> None:
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert "error:" in lines[0] and expected in lines[0], lines[0]
    assert p.stdout == "", p.stdout[:2000]


@pytest.mark.parametrize(("name", "expected"), CORPUS_CASES, ids=[c[0] for c in CORPUS_CASES])
def test_corpus_file_env_and_repro(name: str, expected: str, tmp_path: Path) -> None:
    path = str(CORPUS / name)
    env = clean_env(tmp_path)
    assert_usage_error(fp8doctor(["env", "--config", path], env, tmp_path), expected)
    assert_usage_error(fp8doctor(["repro", "--config", path], env, tmp_path), expected)
    if name in ACCELERATE_KIND:
        assert_usage_error(fp8doctor(["env", "--accelerate-config", path], env, tmp_path), expected)
        p = fp8doctor(["env"], clean_env(tmp_path, ACCELERATE_CONFIG_FILE=path), tmp_path)
        assert_usage_error(p, expected)
        assert "ACCELERATE_CONFIG_FILE points at" in p.stderr


def test_generated_bad_files(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    for name, content, expected in generated(tmp_path):
        path = tmp_path / name
        path.write_bytes(content)
        assert_usage_error(fp8doctor(["env", "--config", str(path)], env, tmp_path), expected)
    assert_usage_error(fp8doctor(["repro", "--config", str(tmp_path / "huge.yaml")], env, tmp_path),
                       "over the 1048576-byte limit")


def test_not_a_file(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    assert_usage_error(fp8doctor(["env", "--config", str(tmp_path / "missing.yaml")], env, tmp_path), "no such file")
    assert_usage_error(fp8doctor(["env", "--config", str(tmp_path)], env, tmp_path), "is a directory")
    assert_usage_error(fp8doctor(["env", "--accelerate-config", str(tmp_path / "nope.yaml")], env, tmp_path),
                       "no such file")
    if os.geteuid() != 0:  # root reads a chmod 000 file
        locked = tmp_path / "locked.yaml"
        locked.write_text("stage: sft\n")
        locked.chmod(0)
        assert_usage_error(fp8doctor(["env", "--config", str(locked)], env, tmp_path), "permission denied")


def test_unsafe_yaml_never_executes(tmp_path: Path) -> None:
    marker = Path("/tmp/fp8doctor-pwned")
    marker.unlink(missing_ok=True)
    for name in ("hostile_python_object.yaml", "hostile_apply.yaml"):
        fp8doctor(["env", "--config", str(CORPUS / name)], clean_env(tmp_path), tmp_path)
    assert not marker.exists()


# Unknown choices and impossible values of every sub-command: (args, stable substring of the error line).
CLI_CASES = [
    (["bogus"], "invalid choice: 'bogus'"),
    (["env", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["env", "--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    (["repro", "--backend", "foo"], "argument --backend: invalid choice: 'foo'"),
    (["repro", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["repro", "--steps", "0"], "--steps must be at least 2"),
    (["repro", "--steps", "two"], "argument --steps: invalid int value: 'two'"),
    (["repro", "--timeout", "0"], "--timeout must be a positive number of seconds"),
    (["repro", "--workers", "0"], "--workers must be at least 1"),
    (["matrix", "--backend", "foo"], "argument --backend: invalid choice: 'foo'"),
    (["matrix", "--entry", "foo"], "argument --entry: invalid choice: 'foo'"),
    (["matrix", "--size", "huge"], "argument --size: invalid choice: 'huge'"),
    (["matrix", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["matrix", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["matrix", "--recipe", "foo", "--out", "OUT"], "unknown recipe for the chosen backends 'foo'"),
    (["matrix", "--backend", "torchao", "--recipe", "delayed_hybrid", "--out", "OUT"],
     "unknown recipe for the chosen backends 'delayed_hybrid'"),
    (["matrix", "--workers", "0", "--out", "OUT"], "--workers must be at least 1"),
    (["matrix", "--steps", "0", "--out", "OUT"], "--steps must be at least 2"),
    (["matrix", "--timeout", "-1", "--out", "OUT"], "--timeout must be a positive number of seconds"),
    (["matrix", "--resume"], "--resume needs --out FILE.jsonl"),
    (["matrix", "--backend", "torchao", "--out", "TMP"], "is a directory; give a FILE.jsonl"),
    (["report", "--steps", "0", "--out-dir", "TMP/r"], "--steps must be at least 2"),
    (["report", "--workers", "0", "--out-dir", "TMP/r"], "--workers must be at least 1"),
    (["report", "--timeout", "0", "--out-dir", "TMP/r"], "--timeout must be a positive number of seconds"),
    (["report", "--watch", "--out-dir", "TMP/r"], "--watch needs the command to watch"),
    (["report", "--out-dir", "TMP/a-file"], "cannot write the report into"),
    (["watch"], "no command to watch"),
    (["watch", "--format", "xml", "--", "true"], "argument --format: invalid choice: 'xml'"),
    (["watch", "--timeout", "0", "--", "true"], "--timeout must be a positive number of seconds"),
    (["watch", "--", "/nonexistent/fp8doctor-cmd"], "command not found or not executable"),
]


@pytest.mark.parametrize(("args", "expected"), CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_usage_errors(args: list[str], expected: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    args = [a.replace("TMP", str(tmp_path)).replace("OUT", str(tmp_path / "m.jsonl")) for a in args]
    p = fp8doctor(args, clean_env(tmp_path), tmp_path, timeout=60)
    assert_usage_error(p, expected)
    assert not (tmp_path / "r").exists()  # nothing measured, nothing written


# ACCELERATE_FP8_* values Accelerate rejects, and one it accepts, per variable fp8doctor validates.
FP8_ENV = {
    "ACCELERATE_FP8_BACKEND": ("ao", "AO"),
    "ACCELERATE_FP8_FORMAT": ("E4M4", "hybrid"),
    "ACCELERATE_FP8_AMAX_COMPUTE_ALGO": ("mean", "MAX"),
    "ACCELERATE_FP8_AMAX_HISTORY_LEN": ("16.5", "16"),
    "ACCELERATE_FP8_MARGIN": ("zero", "0"),
    "ACCELERATE_FP8_INTERVAL": ("1s", "1"),
    "ACCELERATE_FP8_OPT_LEVEL": ("o2", "O2"),
    "ACCELERATE_FP8_OVERRIDE_FPROP": ("maybe", "false"),
    "ACCELERATE_FP8_OVERRIDE_DGRAD": ("2", "0"),
    "ACCELERATE_FP8_OVERRIDE_WGRAD": ("nope", "no"),
    "ACCELERATE_FP8_USE_AUTOCAST_DURING_EVAL": ("enabled", "yes"),
    "ACCELERATE_FP8_USE_MXFP8_BLOCK_SCALING": ("truthy", "on"),
    "ACCELERATE_FP8_PAD_INNER_DIM": ("sometimes", "1"),
    "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": ("-1", "off"),
}

# Reads each variable the way Accelerate does (its recipe handlers' __post_init__ and Accelerator.fp8_backend).
# Transformer Engine is not installed here: TERecipeKwargs' availability check is bypassed so that its real
# parsing of the environment runs; nothing else is touched.
ACCELERATE_PARSE = r"""
import json, os, sys
import accelerate.utils.dataclasses as dc
from accelerate.utils.dataclasses import FP8BackendType
from accelerate.utils.environment import parse_choice_from_env
dc.is_transformer_engine_available = lambda: True
def parse(name):
    if name == "ACCELERATE_FP8_BACKEND":
        FP8BackendType(parse_choice_from_env(name, "NO"))
    elif name == "ACCELERATE_FP8_OPT_LEVEL":
        dc.MSAMPRecipeKwargs()
    elif name in ("ACCELERATE_FP8_PAD_INNER_DIM", "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER"):
        dc.AORecipeKwargs()
    else:
        dc.TERecipeKwargs()
out = {}
for name, value in json.loads(sys.argv[1]):
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("ACCELERATE_FP8_")}
    os.environ[name] = value
    try:
        parse(name)
        out[name + "=" + value] = None
    except Exception as exc:
        out[name + "=" + value] = type(exc).__name__
    del os.environ[name]
print(json.dumps(out))
"""


def test_fp8_env_table_covers_every_validated_variable() -> None:
    assert set(FP8_ENV) == set(VALIDATORS)


def test_invalid_fp8_env_values_are_env_findings(tmp_path: Path) -> None:
    bad = {name: values[0] for name, values in FP8_ENV.items()}
    p = fp8doctor(["env", "--format", "json"], clean_env(tmp_path, **bad), tmp_path)
    assert "Traceback" not in p.stderr
    assert p.returncode == 1, p.stderr
    finding = next(f for f in json.loads(p.stdout)["findings"] if f["id"] == "env.fp8-values")
    assert finding["level"] == "fail"
    for name, value in bad.items():
        assert name in finding["title"] and f"{name}={value!r}" in finding["detail"]
    assert "export ACCELERATE_FP8_BACKEND=AO" in finding["fix"]
    text = fp8doctor(["env"], clean_env(tmp_path, **bad), tmp_path)
    assert text.returncode == 1 and "[✗] Invalid ACCELERATE_FP8_* value(s)" in text.stdout

    good = {name: values[1] for name, values in FP8_ENV.items()}
    p = fp8doctor(["env", "--format", "json"], clean_env(tmp_path, **good), tmp_path)
    finding = next(f for f in json.loads(p.stdout)["findings"] if f["id"] == "env.fp8-values")
    assert finding["level"] == "ok", finding


def test_fp8_env_verdicts_match_accelerates_own_parsing(tmp_path: Path) -> None:
    """What fp8doctor calls invalid, the installed Accelerate rejects; what it accepts, Accelerate accepts."""
    pairs = [(n, v) for n, values in FP8_ENV.items() for v in values]
    p = subprocess.run([sys.executable, "-c", ACCELERATE_PARSE, json.dumps(pairs)], capture_output=True, text=True,
                       env=clean_env(tmp_path), timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    raised = json.loads(p.stdout.strip().splitlines()[-1])
    for name, (invalid, valid) in FP8_ENV.items():
        assert raised[f"{name}={invalid}"] is not None, f"Accelerate accepts {name}={invalid}"
        assert raised[f"{name}={valid}"] is None, f"Accelerate rejects {name}={valid}: {raised[f'{name}={valid}']}"
