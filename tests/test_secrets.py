"""No planted secret reaches any output: tokens in environment variables (HF, W&B, AWS, OpenAI-style, generic
*_TOKEN/*_KEY/*_SECRET/*PASSWORD*), credentials in URLs (a proxy, a config value, a command-line argument) and
secrets in config files. Every command that writes output runs for real on its smallest selection (env in every
format, repro, matrix, report with --watch, watch in every format); stdout, stderr and every file written under
the test's folder (TMPDIR included) are searched for each planted value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET_ENV = {
    "HF_TOKEN": "hf_PlantedHuggingFaceToken0123456789ab",
    "HUGGING_FACE_HUB_TOKEN": "hf_PlantedHubToken0123456789abcdefgh",
    "WANDB_API_KEY": "plantedwandbkey0123456789abcdef01234567",
    "AWS_SECRET_ACCESS_KEY": "PlantedAwsSecret/0123456789abcdefghijKLMN",
    "AWS_ACCESS_KEY_ID": "AKIAPLANTED012345678",
    "OPENAI_API_KEY": "sk-PlantedOpenAiKey0123456789abcdefgh",
    "FOO_TOKEN": "plantedfootoken7781",
    "BAR_KEY": "plantedbarkey7782",
    "BAZ_SECRET": "plantedbazsecret7783",
    "MY_PASSWORD": "plantedmypassword7784",
    "HTTPS_PROXY": "http://proxyuser:plantedproxypass7785@proxy.invalid:3128",
    # Names under prefixes fp8doctor records (ACCELERATE_*, NCCL_*, TORCH*, HF_*): listed, never shown.
    "ACCELERATE_HUB_TOKEN": "plantedacceltoken7786",
    "NCCL_IB_SECRET": "plantedncclsecret7787",
    "TORCH_HUB_PASSWORD": "plantedtorchpw7788",
    "HF_HUB_DOWNLOAD_URL": "https://hfuser:plantedhfurlpass7789@mirror.invalid/simple",
    # Round two (issue 14): a token as the user of a URL (no password), a password holding `/`, a token-shaped
    # path segment, a token as a URL query parameter; all under prefixes that reach reports and results files.
    "ACCELERATE_HUB_URL": "https://plantedtokenuser7801@hub.invalid/models",
    "HF_ENDPOINT": "https://hfuser:planted/slash7802@mirror.invalid/",
    "NVTE_CACHE_DIR": "/data/hf_PlantedPathSegment0123456789_copy/cache",
    "TORCH_HUB_MIRROR": "https://hub.invalid/x?access_token=plantedquery7805&x=1",
    # Round three (issue 20): signature parameters of presigned / SAS URLs, and a private key block, under names
    # that say nothing.
    "HF_HUB_SAS_URL": "https://acct.blob.core.windows.net/c/m.bin?sv=2022-11-02&sp=r&sig=plantedsassig7809",
    "ACCELERATE_MODEL_URL": "https://b.s3.invalid/m?X-Amz-Credential=plantedamzcred7810%2Fx"
                            "&X-Amz-Signature=plantedamzsig7811",
    "NCCL_DEBUG_NOTE": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1plantedpemenv7812\n"
                       "-----END OPENSSH PRIVATE KEY-----",
}
CONFIG_SECRETS = {
    "url": "plantedconfigurlpass7790",
    "hub_token": "hf_PlantedConfigToken0123456789abcd",
    "wandb": "plantedconfigwandb7791",
    "ds": "plantedds7795",
    "pem": "MIIEplantedpemconfig7813",
    "sig": "plantedconfigsig7814",
}
ARG_SECRETS = {"hub_token": "plainhubtoken7794", "password": "plantedargpw7792", "url": "plantedargurl7793",
               "env": "plantedenvassign7803", "auth": "plantedauth7804", "bearer": "plantedbearer7806",
               "wandb_key": "plantedwandbarg7815", "sig": "plantedargsig7816"}
ERROR_SECRETS = {"path": "hf_PlantedErrorPath0123456789abcd", "url": "plantederrpw7807", "arg": "plantedparse7808"}
PLANTED = [*SECRET_ENV.values(), *CONFIG_SECRETS.values(), *ARG_SECRETS.values(), *ERROR_SECRETS.values()]
# Every planted value contains this (case-insensitive); a partial leak is caught too.
MARK = "planted"

LLAMAFACTORY = f"""\
model_name_or_path: https://hfuser:{CONFIG_SECRETS['url']}@huggingface.invalid/Qwen/Qwen2.5-7B
stage: sft
do_train: true
finetuning_type: full
fp8: true
fp8_backend: torchao
bf16: true
hub_token: {CONFIG_SECRETS['hub_token']}
wandb_api_key: {CONFIG_SECRETS['wandb']}
output_dir: out
dataset_dir: https://cdn.invalid/data?Expires=1&Signature={CONFIG_SECRETS['sig']}
notes: |
  -----BEGIN RSA PRIVATE KEY-----
  {CONFIG_SECRETS['pem']}
  -----END RSA PRIVATE KEY-----
"""
ACCELERATE = """\
compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
mixed_precision: fp8
fp8_config:
  backend: AO
num_processes: 1
"""
DEEPSPEED = {"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": True}, "fp8": {"enabled": True},
             "zero_optimization": {"stage": 2, "offload_param": {"nvme_path": f"s3://k:{CONFIG_SECRETS['ds']}@b/x"}}}
# A watched "training script": builds a real Accelerator (the observer records it and the environment).
TRAIN = """\
import sys
from accelerate import Accelerator
acc = Accelerator(mixed_precision="no")
print("arguments:", len(sys.argv) - 1)
"""


@pytest.fixture
def planted(tmp_path: Path) -> dict:
    """Inputs in tmp/inputs (they hold the secrets on purpose); the commands run in tmp/work with TMPDIR inside it."""
    inputs, work = tmp_path / "inputs", tmp_path / "work"
    (work / "tmp").mkdir(parents=True)
    inputs.mkdir()
    (inputs / "train.yaml").write_text(LLAMAFACTORY)
    (inputs / "accelerate.yaml").write_text(ACCELERATE)
    (inputs / "ds.json").write_text(json.dumps(DEEPSPEED))
    (inputs / "train.py").write_text(TRAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8DOCTOR_"))}
    env.update(SECRET_ENV, HOME=str(work), TMPDIR=str(work / "tmp"), NO_PROXY="*")
    return {"inputs": inputs, "work": work, "env": env}


def run(planted: dict, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True, timeout=timeout,
                       env=planted["env"], cwd=planted["work"], stdin=subprocess.DEVNULL)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p


def leaks(text: str) -> list[str]:
    found = [s for s in PLANTED if s in text]
    lowered = text.lower()
    if MARK in lowered and not found:
        i = lowered.index(MARK)
        found.append(f"partial: ...{text[max(0, i - 60):i + 30]}...")
    return found


def assert_no_leak(planted: dict, procs: list[subprocess.CompletedProcess]) -> list[Path]:
    for p in procs:
        assert not leaks(p.stdout), (p.args, leaks(p.stdout))
        assert not leaks(p.stderr), (p.args, leaks(p.stderr))
    written = [f for f in planted["work"].rglob("*") if f.is_file()]
    for f in written:
        text = f.read_bytes().decode("utf-8", "replace")
        assert not leaks(text), (str(f), leaks(text))
    return written


def watched(planted: dict) -> list[str]:
    return ["env", f"HF_TOKEN={ARG_SECRETS['env']}", sys.executable, str(planted["inputs"] / "train.py"),
            "--hub_token", ARG_SECRETS["hub_token"], f"--password={ARG_SECRETS['password']}", "--url",
            f"https://u:{ARG_SECRETS['url']}@h.invalid/x", "--auth", ARG_SECRETS["auth"], "--header",
            f"Authorization: Bearer {ARG_SECRETS['bearer']}", "--wandb_key", ARG_SECRETS["wandb_key"], "--data",
            f"https://h.invalid/d?se=1&sig={ARG_SECRETS['sig']}", "--tokenizer_name", "kept-visible"]


def test_env_every_format(planted: dict) -> None:
    inputs = planted["inputs"]
    configs = ["--config", str(inputs / "train.yaml"), "--config", str(inputs / "ds.json"),
               "--accelerate-config", str(inputs / "accelerate.yaml")]
    procs = [run(planted, ["env", *configs, "--format", fmt]) for fmt in ("text", "md", "json")]
    assert all(p.returncode in (0, 1) for p in procs), [p.stderr for p in procs]
    assert_no_leak(planted, procs)
    facts = json.loads(procs[2].stdout)["facts"]
    assert "***REDACTED***" in json.dumps(facts)  # the planted values were seen, and redacted
    assert "huggingface.invalid" in procs[2].stdout  # only the credentials of the URL go


def test_watch_every_format(planted: dict) -> None:
    procs = [run(planted, ["watch", "--timeout", "300", "--format", fmt, "--", *watched(planted)])
             for fmt in ("text", "md", "json")]
    assert all(p.returncode == 1 for p in procs), [p.stderr[-2000:] for p in procs]  # ran, FP8 not active
    assert_no_leak(planted, procs)
    assert "kept-visible" in procs[0].stdout  # non-secret arguments stay readable


def test_matrix_all_formats_and_results_file(planted: dict) -> None:
    out = planted["work"] / "m.jsonl"
    base = ["matrix", "--backend", "torchao", "--recipe", "tensorwise", "--entry", "native", "--steps", "2",
            "--workers", "2", "--out", str(out)]
    first = run(planted, [*base, "--format", "json"])
    assert first.returncode == 0, first.stderr[-3000:]
    # --resume re-renders the measured cells in the other formats without running them again.
    again = [run(planted, [*base, "--resume", "--format", fmt]) for fmt in ("text", "md")]
    assert all(p.returncode == 0 for p in again)
    written = assert_no_leak(planted, [first, *again])
    assert out in written and len(out.read_text().splitlines()) == 2


def test_repro_with_secret_config(planted: dict) -> None:
    p = run(planted, ["repro", "--config", str(planted["inputs"] / "train.yaml"), "--steps", "2", "--workers", "2",
                      "--format", "json"])
    assert p.returncode in (0, 1), p.stderr[-3000:]
    assert_no_leak(planted, [p])
    assert json.loads(p.stdout)


# `fp8doctor report` as the CLI runs it, minus the repro part (test_repro_with_secret_config covers repro's
# output; running it twice would double this file's time).
REPORT = r"""
import dataclasses, sys
import fp8doctor.report.command as command
from fp8doctor.cli import main
full_build = command.build
command.build = lambda opts: full_build(dataclasses.replace(opts, skip_parts=("repro",)))
sys.exit(main(sys.argv[1:]))
"""


def test_report_with_watch(planted: dict) -> None:
    out_dir = planted["work"] / "reports"
    args = ["report", "--quick", "--steps", "2", "--workers", "2", "--out-dir", str(out_dir), "--watch", "--",
            *watched(planted)]
    p = subprocess.run([sys.executable, "-c", REPORT, *args], capture_output=True, text=True, timeout=600,
                       env=planted["env"], cwd=planted["work"], stdin=subprocess.DEVNULL)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.returncode in (0, 1), p.stderr[-3000:]
    written = assert_no_leak(planted, [p])
    kinds = {f.suffix for f in written if f.parent == out_dir}
    assert {".md", ".json", ".jsonl"} <= kinds, written
    report = json.loads(next(f for f in written if f.parent == out_dir and f.suffix == ".json").read_text())
    assert {part["name"] for part in report["parts"]} == {"env", "matrix", "watch"}


def test_error_lines_echo_no_secret(planted: dict) -> None:
    """An error line echoes the path or argument it refuses: a token-shaped path segment, a URL's credentials and
    a secret option argparse does not know are redacted there too (before: printed as given)."""
    work = planted["work"]
    procs = [
        run(planted, ["env", "--config", str(work / ERROR_SECRETS["path"] / "missing.yaml")]),
        run(planted, ["env", "--config", f"https://erruser:{ERROR_SECRETS['url']}@host.invalid/c.yaml"]),
        run(planted, ["matrix", "--bogus", "--hub_token", ERROR_SECRETS["arg"]]),
        run(planted, ["watch", "--", f"/nonexistent/{ERROR_SECRETS['path']}/train"]),
    ]
    assert [p.returncode for p in procs] == [2, 2, 2, 2], [p.stderr for p in procs]
    assert all(p.stderr.count("\n") == 1 and "***REDACTED***" in p.stderr for p in procs), [p.stderr for p in procs]
    assert_no_leak(planted, procs)


# Round three (issue 20): the exception text a watched command's Accelerator raises, and record files that
# someone else wrote (a forged or foreign node's), are inputs too.
RAISES = """\
import os, sys
from accelerate import Accelerator
try:
    Accelerator(mixed_precision="fp8 " + os.environ["HF_HUB_SAS_URL"] + " " + os.environ["NCCL_DEBUG_NOTE"])
except Exception:
    sys.exit(3)  # the command's own traceback would be the command's leak, not fp8doctor's
"""
RECORD_SECRETS = {"argv": "plantedrecordarg7817", "env": "plantedrecordenv7818", "error": "plantedrecorderr7819",
                  "pem": "plantedrecordpem7820", "marker": "plantedmarkercmd7821"}
PLANTED += list(RECORD_SECRETS.values())


def planted_records(root: Path) -> Path:
    host = root / "records" / "node-x"
    host.mkdir(parents=True)
    pem = f"-----BEGIN PRIVATE KEY-----\n{RECORD_SECRETS['pem']}\n-----END PRIVATE KEY-----"
    process = {"kind": "process", "pid": 4242, "ppid": 1, "host": "node-x", "watch_id": "w9",
               "argv": ["train.py", "--wandb_key", RECORD_SECRETS["argv"]],
               "rank_env": {"RANK": "0", "WORLD_SIZE": "1"},
               "env_at_start": {"HF_HUB_SAS_URL": f"https://a.invalid/m?sig={RECORD_SECRETS['env']}"},
               "accelerate_env": {"ACCELERATE_MODEL_URL": f"https://a.invalid/m?X-Amz-Signature={RECORD_SECRETS['env']}"}}
    acc = {"kind": "accelerator", "id": 0, "arg_mixed_precision": "fp8", "handlers": [], "fp8_handlers": [],
           "error": {"type": "ValueError",
                     "message": f"download https://c.invalid/w?X-Amz-Credential={RECORD_SECRETS['error']} {pem}"}}
    (host / "0-4242.jsonl").write_text(json.dumps(process) + "\n" + json.dumps(acc) + "\n")
    (host / "watch-9.json").write_text(json.dumps(
        {"state": "done", "node": 0, "command": ["python", "t.py", f"--X-Amz-Signature={RECORD_SECRETS['marker']}"]}))
    return root / "records"


def test_exception_text_and_planted_records(planted: dict) -> None:
    (planted["inputs"] / "raises.py").write_text(RAISES)
    records = planted_records(planted["inputs"])
    out = planted["work"] / "merged.md"
    procs = [run(planted, ["watch", "--format", fmt, "--", sys.executable, str(planted["inputs"] / "raises.py")])
             for fmt in ("text", "json")]
    assert all(p.returncode == 3 for p in procs), [p.stderr[-2000:] for p in procs]
    assert "ValueError" in procs[1].stdout  # the exception was recorded, with its text redacted
    procs += [run(planted, ["watch", "--merge", str(records), "--format", fmt]) for fmt in ("text", "md", "json")]
    procs.append(run(planted, ["watch", "--merge", str(records), "--format", "md", "--output", str(out)]))
    assert [p.returncode for p in procs[2:]] == [1, 1, 1, 1], [p.stderr for p in procs[2:]]
    written = assert_no_leak(planted, procs)
    assert out in written and "***REDACTED***" in out.read_text()


UNCAUGHT = """\
import os
raise RuntimeError("cannot fetch " + os.environ["HF_HUB_SAS_URL"] + " " + os.environ["NCCL_DEBUG_NOTE"])
"""


def test_an_uncaught_exception_is_recorded_redacted(planted: dict) -> None:
    """The observer records the exception that ends a watched process (a frontend's refusal is quoted from it):
    its text reaches the record files and the report only redacted. The command's own traceback on stderr is the
    command's output, not fp8doctor's, so only fp8doctor's stdout and files are searched."""
    (planted["inputs"] / "uncaught.py").write_text(UNCAUGHT)
    records, out = planted["work"] / "recs", planted["work"] / "w.json"
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "watch", "--format", "json", "--output", str(out),
                        "--records", str(records), "--", sys.executable, str(planted["inputs"] / "uncaught.py")],
                       capture_output=True, text=True, timeout=600, env=planted["env"], cwd=planted["work"],
                       stdin=subprocess.DEVNULL)
    assert p.returncode != 0 and "RuntimeError: cannot fetch" in p.stderr, p.stderr[-2000:]
    assert not leaks(p.stdout), leaks(p.stdout)
    written = assert_no_leak(planted, [])
    lines = [json.loads(line) for f in written if f.suffix == ".jsonl" for line in f.read_text().splitlines()]
    raised = [r for r in lines if r.get("kind") == "exception"]
    assert [r["type"] for r in raised] == ["RuntimeError"] and "***REDACTED***" in raised[0]["message"], raised
    assert out in written
