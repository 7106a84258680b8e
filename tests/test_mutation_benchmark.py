"""benchmarks/mutation.py refuses bad input with one line and exit 2, before copying or mutating anything.

A full run takes minutes (docs/mutation.md), so it is measured by hand, not here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "mutation.py"


def run(*args: str, python: tuple[str, ...] = (sys.executable,)) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*python, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_missing_mutmut_is_one_line_and_exit_2() -> None:
    # -S: a real interpreter without site-packages, so mutmut (and only the stdlib is needed to say so) is absent
    proc = run(python=(sys.executable, "-S"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "mutation: mutmut is not installed here; pip install 'mutmut>=3.8,<4' (the test extra)"]
    assert "mutation score" not in proc.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["--paths", "fp8doctor/knowledge/no_such_module.py"], "matches no .py file"),
    (["--paths", "tests/test_core.py"], "expected a glob under fp8doctor/"),
    (["--paths", "fp8doctor/knowledge/te_releases.json"], "expected a glob under fp8doctor/"),
    (["--json", "/nonexistent-dir/m.json"], "no such folder"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], says: str, tmp_path: Path) -> None:
    before = sorted(p.name for p in ROOT.iterdir())
    proc = run(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before  # no mutants/ or anything else left behind


@pytest.mark.parametrize(("value", "says"), [("0", "must be at least 1"), ("-3", "must be at least 1"),
                                             ("many", "not a whole number")])
def test_max_mutants_must_be_a_positive_count(value: str, says: str) -> None:
    proc = run("--max-mutants", value)
    assert proc.returncode == 2
    assert "--max-mutants" in proc.stderr and says in proc.stderr and "Traceback" not in proc.stderr
