"""`fp8doctor env --what-if PKG==VER`: the same diagnosis with other releases in place of the installed ones, the
engine answering. The upgrade fix each observed release prints is executed here the only way a CPU machine can:
diagnosed again with the release it names in place."""

from __future__ import annotations

import json
import re

import pytest
from test_env_cli import doctor

from fp8doctor.knowledge.generations import accelerate_generation
from fp8doctor.knowledge.releases import observed


def _findings(proc) -> dict[str, dict]:
    assert proc.stderr.strip() == "" or "Traceback" not in proc.stderr, proc.stderr
    return {f["id"]: f for f in json.loads(proc.stdout)["findings"]}


UPGRADE = re.compile(r"pip install 'accelerate>=([0-9.]+)'")
OLD = [v for v in observed()["accelerate"] if not accelerate_generation(v)["env_fp8_works"]]


@pytest.mark.parametrize("release", [OLD[0], OLD[-1]])
def test_printed_upgrade_fix_makes_fp8_reach_the_accelerator(tmp_path, release: str) -> None:
    """ACCELERATE_MIXED_PRECISION=fp8 on a release where env-only fp8 does not train in FP8: the finding fails and
    its fix names an upgrade; with that release in place the same setup trains in FP8."""
    env = {"ACCELERATE_MIXED_PRECISION": "fp8"}
    before = _findings(doctor(tmp_path, "--what-if", f"accelerate=={release}", "--format", "json", **env))
    assert before["precision.effective"]["level"] == "fail"
    [upgrade] = set(UPGRADE.findall(before["precision.effective"]["fix"]))
    after_proc = doctor(tmp_path, "--what-if", f"accelerate=={upgrade}", "--format", "json", **env)
    after = _findings(after_proc)
    assert after["precision.effective"]["level"] == "ok", after["precision.effective"]
    assert json.loads(after_proc.stdout)["facts"]["what_if"]["accelerate"]["asked"] == upgrade


def test_beyond_the_observed_releases_is_said(tmp_path) -> None:
    newest = observed()["accelerate"][-1]
    out = doctor(tmp_path, "--what-if", "accelerate==99.0.0", "--what-if", "transformers==4.46.0").stdout
    assert f"accelerate 99.0.0: newer than any release observed: predicted as {newest}" in out
    assert "What if" in out and "accelerate 99.0.0 in place of" in out
    older = doctor(tmp_path, "--what-if", "accelerate==0.20.0", "--format", "json",
                   ACCELERATE_MIXED_PRECISION="fp8")
    facts = json.loads(older.stdout)["facts"]
    assert facts["precision"]["outcome"]["outcome"] == "unknown"
    assert any("older than any release observed" in n for n in facts["precision"]["observed"])


@pytest.mark.parametrize("bad", ["accelerate", "numpy==1.0", "accelerate==not-a-version", "==1.9"])
def test_bad_what_if_is_one_line_and_exit_2(tmp_path, bad: str) -> None:
    proc = doctor(tmp_path, "--what-if", bad)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "--what-if" in proc.stderr


def test_torchao_is_no_usable_backend_on_an_accelerate_without_its_recipe(tmp_path) -> None:
    """accelerate <= 1.3 has no AORecipeKwargs (lab cells acc1.1/acc1.3): torchao installed is not a usable backend
    there, and the fix is the first observed release that has the class."""
    old = _findings(doctor(tmp_path, "--what-if", "accelerate==1.3.0", "--format", "json"))
    assert "backend.any" not in old and old["backend.none"]["title"] == "No FP8 backend this accelerate can use"
    assert old["backend.none"]["fix"].startswith("pip install 'accelerate>=1.4'")
    new = _findings(doctor(tmp_path, "--what-if", "accelerate==1.4.0", "--format", "json"))
    assert new["backend.any"]["title"].startswith("Usable FP8 backend: torchao")
