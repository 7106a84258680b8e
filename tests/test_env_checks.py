"""`fp8doctor env --list-checks` and `--check ID`: every rule has one stable id, the finding ids each check
really gives on real facts are the ones it declares, docs/env.md lists the same ids, and --check runs only
the checks named (bad ids: one line, exit 2)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fp8doctor.facts.collect import collect_facts
from fp8doctor.rules import ALL_CHECKS, registry

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(str(p) for p in (ROOT / "repro_configs").iterdir())


def fp8doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fp8doctor", "env", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_every_rule_has_one_id() -> None:
    assert [c.run for c in registry.CHECKS] == list(ALL_CHECKS)
    assert len({c.id for c in registry.CHECKS}) == len(registry.CHECKS)
    assert len({c.run for c in registry.CHECKS}) == len(registry.CHECKS)


ENVIRONS = [
    {},
    {"ACCELERATE_MIXED_PRECISION": "fp8"},
    {"ACCELERATE_MIXED_PRECISION": " fp8 ", "ACCELERATE_FP8_BACKEND": "ao"},
    {"ACCELERATE_MIXED_PRECISION": "bf16", "FP8_BACKEND": "te", "ACCELERATE_FP8_RECIPE": "x"},
]


@pytest.mark.parametrize("environ", ENVIRONS)
def test_each_check_gives_only_the_finding_ids_it_declares(environ, tmp_path) -> None:
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", ""), **environ}
    for configs in ([], [c for c in CONFIGS if "llamafactory" in c][:1], [c for c in CONFIGS if "accelerate" in c]
                    [:1], [c for c in CONFIGS if "deepspeed" in c]):
        facts = collect_facts(config_paths=configs, environ=env)
        for check in registry.CHECKS:
            for finding in registry.evaluate_selected(facts, [check.id]):
                assert check.gave(finding.id), (check.id, finding.id, environ, configs)


def test_list_checks_text_and_json_name_every_id() -> None:
    p = fp8doctor("--list-checks")
    assert p.returncode == 0 and p.stderr == ""
    listed = [line.split()[0] for line in p.stdout.splitlines()[2:] if line.strip() and line[0] != " "
              and not line.startswith("Run ")]
    assert listed == [c.id for c in registry.CHECKS]
    j = fp8doctor("--list-checks", "--format", "json")
    assert [c["id"] for c in json.loads(j.stdout)] == listed


def test_docs_list_the_same_check_ids() -> None:
    text = (ROOT / "docs" / "env.md").read_text()
    table = text[text.index("| Check id |"):]
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    stop = next((i for i, line in enumerate(table.splitlines()[2:]) if not line.startswith("|")), len(rows))
    ids = [re.search(r"`([^`]+)`", row).group(1) for row in rows[:stop]]
    assert ids == [c.id for c in registry.CHECKS]
    for row, check in zip(rows, registry.CHECKS, strict=False):
        assert all(f"`{g}`" in row for g in check.gives), (check.id, row)


def test_check_runs_only_the_named_checks(tmp_path) -> None:
    env = dict(os.environ, HOME=str(tmp_path), ACCELERATE_MIXED_PRECISION="Fp8")
    env.pop("ACCELERATE_CONFIG_FILE", None)
    p = fp8doctor("--check", "env.mixed-precision", "--check", "gpu", "--format", "json", env=env)
    found = [f["id"] for f in json.loads(p.stdout)["findings"]]
    assert len(found) == 2 and {f.split(".")[0] for f in found} == {"env", "gpu"}
    assert p.returncode == 1  # 'Fp8' is not 'fp8': env.mixed-precision fails
    alone = fp8doctor("--check", "backend.any", env=env)
    findings = alone.stdout[alone.stdout.index("Findings:"):]
    assert alone.returncode == 0 and "Usable FP8 backend" in findings and "ACCELERATE_MIXED_PRECISION" not in findings


@pytest.mark.parametrize(("args", "needle"), [
    (["--check", "gpu.none"], "unknown check id 'gpu.none'"),
    (["--check", "\x1b[31mx"], "unknown check id"),
    (["--list-checks", "--check", "gpu"], "--list-checks lists every check"),
])
def test_bad_check_ids_are_one_line_and_exit_2(args, needle) -> None:
    p = fp8doctor(*args)
    assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "\x1b" not in p.stderr and p.stdout == ""
