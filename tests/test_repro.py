"""`fp8doctor repro` end to end: one shared real repro (built-in paths + a LLaMA-Factory config), rendered in
every format; bad input and the no-TE `--backend te` path through the real CLI; plans on hand-written configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from session_cache import computed_once

from fp8doctor.redact import REDACTED
from fp8doctor.repro import build_plan, load_user_configs, render, run_repro, to_json_obj
from fp8doctor.system.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "repro_configs"
SECRET = "hf_" + "a1b2c3d4e5" * 3
CALLER_ENV = {"ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_FP8_BACKEND": "AO", "ACCELERATE_HUB_TOKEN": SECRET}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    def compute():
        saved = {k: os.environ.get(k) for k in CALLER_ENV}
        os.environ.update(CALLER_ENV)  # the user's shell: must be recorded, redacted and not inherited
        try:
            rep = run_repro([str(CONFIGS / "llamafactory_ao_bf16.yaml")], steps=5, progress=False)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return {"json": to_json_obj(rep), "text": render(rep, "text"), "md": render(rep, "md"),
                "json_text": render(rep, "json"), "exit_code": rep.exit_code()}

    return computed_once(tmp_path_factory, "fp8doctor-repro", compute)


def rows(report):
    return {r["id"]: r for r in report["json"]["rows"]}


def test_buggy_paths(report):
    r = rows(report)
    append = r["buggy_append"]
    assert append["verdict"] == "reproduced"
    err = append["result"]["error"]
    assert err["type"] == "ValueError" and err["where"].startswith("accelerate/accelerator.py:")
    assert "patched_accelerator_init" in err["user_where"]
    assert append["result"]["patch"]["injected"] == 1 and append["result"]["patch"]["mixed_precision_arg"] == "bf16"
    missing = r["buggy_if_missing"]
    # transformers 5.x always passes kwargs_handlers, so the report's patch injects nothing: silent bf16.
    assert missing["verdict"] == "silent-bf16", missing["reason"]
    assert missing["result"]["patch"]["injected"] == 0
    assert missing["result"]["patch"]["kwargs_handlers_seen"] == ["DistributedDataParallelKwargs"]
    assert missing["result"]["accelerator"]["mixed_precision"] == "bf16" and missing["result"]["fp8_layers"] == []


@pytest.mark.parametrize("key", ["accelerator", "trainer", "launch", "multiproc", "native"])
def test_fixed_paths_fp8_active(report, key):
    row = rows(report)[key]
    assert row["verdict"] == "fp8-active", row["reason"]
    res = row["result"]
    assert len(res["fp8_layers"]) == len(res["eligible_layers"]) == 13
    assert res["losses"][-1] < res["losses"][0]


def test_multiproc_ran_two_gloo_ranks(report):
    res = rows(report)["multiproc"]["result"]
    assert res["launcher"]["processes_started"] == 2 and res["launcher"]["command"].startswith(
        "ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2")
    for rank in res["ranks"]:
        assert rank["outcome"] == "finished" and rank["fp8_active"]
        assert (rank["accelerator"]["distributed_type"], rank["accelerator"]["num_processes"]) == ("MULTI_CPU", 2)


def test_user_config_rows(report):
    r = rows(report)
    assert r["yours_append"]["verdict"] == "reproduced"
    # LLaMA-Factory's env (fp8 + ACCELERATE_FP8_BACKEND=AO) under bf16: true: bf16 wins; the leftover backend
    # variable may send Accelerate 1.15 down its torchao path without a recipe (an AttributeError).
    for key in ("yours_if_missing", "yours_trainer"):
        assert r[key]["verdict"] in ("silent-bf16", "failed"), r[key]["reason"]
        assert r[key]["result"]["outcome"] == "finished" or "_prepare_ao" in r[key]["result"]["error"]["where"]
    assert all(x["as_expected"] for x in r.values()), [(x["id"], x["verdict"], x["reason"]) for x in r.values()]
    assert report["exit_code"] == 0 and report["json"]["exit_code"] == 0


def test_text_table_and_fix(report):
    text = report["text"]
    for word in ("path", "expected", "verdict", "mixed_precision", "fp8 layers", "loss first -> last", "time"):
        assert word in text.splitlines()[2]
    assert "reproduced" in text and "fp8-active" in text and "13/13" in text and "0/13" in text
    assert "backend-independent" in text
    assert "export ACCELERATE_MIXED_PRECISION=fp8 ACCELERATE_FP8_BACKEND=AO" in text
    assert "ACCELERATE_MIXED_PRECISION=bf16" in text.split("NOT passed to the runs:")[1]
    assert SECRET not in text and REDACTED in text
    assert text.rstrip().endswith("exit 0: diagnosis complete")


def test_md_and_json(report):
    assert "| path" in report["md"] and "```bash" in report["md"]
    obj = json.loads(report["json_text"])
    assert obj["exit_code"] == 0 and len(obj["rows"]) == 10
    assert obj["caller_env"]["removed_from_caller"]["ACCELERATE_HUB_TOKEN"] == REDACTED
    assert SECRET not in report["json_text"]
    assert [r["id"] for r in obj["rows"]][:2] == ["buggy_append", "buggy_if_missing"]
    assert isinstance(obj["rows"][2]["result"]["tokens_per_s"], float)


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fp8doctor", "repro", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("content,name,needle", [
    (None, "missing.yaml", "no such file"),
    ("fp8: [true\n", "bad.yaml", "malformed"),
    ('{"zero_optimization": {"stage": 2}, "train_batch_size": 8}', "ds.json", "not a DeepSpeed config"),
    ("stage: sft\nfp8: maybe\nbf16: true\n", "lf.yaml", "`fp8` must be true or false"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, content, name, needle):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    proc = cli("--config", str(path))
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_backend_te_without_te_is_not_applicable_exit_1():
    from fp8doctor.runs.machine import skip_reason
    from fp8doctor.runs.spec import RunSpec

    if skip_reason(RunSpec(backend="te", recipe="delayed_hybrid")) is None:
        pytest.skip("Transformer Engine can run here; this test covers machines without it")
    proc = cli("--backend", "te", "--config", str(CONFIGS / "llamafactory_te_bf16.yaml"), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    obj = json.loads(proc.stdout)
    assert {r["verdict"] for r in obj["rows"]} == {"not-applicable"}
    assert len(obj["rows"]) == 10
    assert "Transformer Engine" in obj["rows"][0]["reason"]


def no_skip(spec):
    return None


def test_plan_for_fixed_and_two_process_configs():
    configs = load_user_configs([str(CONFIGS / "llamafactory_ao_fixed.yaml"),
                                 str(CONFIGS / "accelerate_fp8_ao_2proc.yaml")])
    plan = build_plan("auto", configs, skip=no_skip, work_dir=None)
    assert plan.backend == "torchao"
    r = {row.key: row for row in plan.rows}
    for key in ("yours_append", "yours_if_missing", "yours_trainer", "yours_launch"):
        assert r[key].expected == ("fp8-active",)
    assert r["yours_trainer"].spec.env["ACCELERATE_MIXED_PRECISION"] == "fp8" and not r["yours_trainer"].spec.bf16
    assert r["yours_launch"].spec.nproc == 2


def test_plan_te_config_falls_back_to_torchao_when_te_cannot_run():
    configs = load_user_configs([str(CONFIGS / "llamafactory_te_bf16.yaml")])

    def te_missing(spec):
        return "Transformer Engine is not installed." if spec.backend == "te" else None

    plan = build_plan("auto", configs, skip=te_missing)
    assert plan.backend == "torchao" and "backend-independent" in plan.notes[0]
    assert build_plan("auto", configs, skip=no_skip).backend == "te"
    with pytest.raises(UsageError):
        load_user_configs([str(CONFIGS / "llamafactory_te_bf16.yaml")] * 2)
