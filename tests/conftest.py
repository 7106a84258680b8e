"""Shared test fixtures. pytester drives the pytest plugin's tests; `cpu_matrix` runs the CPU torchao matrix once
per session (shared by pytest-xdist workers through a lock file) for the matrix CLI and CPU cell tests."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

CPU_MATRIX_ARGS = ["--backend", "torchao", "--workers", "2", "--steps", "8"]


@pytest.fixture(scope="session")
def cpu_matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`fp8doctor matrix --backend torchao --workers 2 --format json`, run for real once per test session:
    {"rc", "json", "stderr", "jsonl" (path)}."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if root.name.startswith("popen-gw") else root  # shared by every xdist worker
    done = root / "cpu_matrix.json"
    with open(root / "cpu_matrix.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            jsonl = root / "cpu_matrix.jsonl"
            p = subprocess.run(
                [sys.executable, "-m", "fp8doctor", "matrix", *CPU_MATRIX_ARGS, "--out", str(jsonl), "--format",
                 "json"], capture_output=True, text=True, timeout=900, cwd=root,
            )
            saved = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr[-4000:], "jsonl": str(jsonl)}
            done.write_text(json.dumps(saved))
    saved = json.loads(done.read_text())
    saved["json"] = json.loads(saved["stdout"]) if saved["stdout"].strip().startswith("{") else None
    saved["jsonl"] = Path(saved["jsonl"])
    return saved
