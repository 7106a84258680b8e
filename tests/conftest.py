"""Shared test fixtures. pytester drives the pytest plugin's tests; `cpu_matrix` runs the CPU torchao matrix once
per session (shared by pytest-xdist workers through a lock file) for the matrix CLI and CPU cell tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from session_cache import computed_once, shared_root

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "live_lab: rebuilds lab cells and probes them (FP8DOCTOR_LIVE_LAB=1)")

# The single-process and DDP entries; the sharded entries (fsdp2, deepspeed) are run on CPU by
# tests/test_sharded_entries.py, so this shared matrix stays a few minutes long.
CPU_MATRIX_ENTRIES = ("native", "accelerator", "trainer", "launch", "multiproc")
CPU_MATRIX_ARGS = ["--backend", "torchao", "--workers", "2", "--steps", "8",
                   *[arg for entry in CPU_MATRIX_ENTRIES for arg in ("--entry", entry)]]


@pytest.fixture(scope="session")
def cpu_matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`fp8doctor matrix --backend torchao --workers 2 --format json`, run for real once per test session:
    {"rc", "json", "stderr", "jsonl" (path)}."""
    jsonl = shared_root(tmp_path_factory) / "cpu_matrix.jsonl"

    def compute() -> dict[str, Any]:
        p = subprocess.run(
            [sys.executable, "-m", "fp8doctor", "matrix", *CPU_MATRIX_ARGS, "--out", str(jsonl), "--format",
             "json"], capture_output=True, text=True, timeout=900, cwd=jsonl.parent,
        )
        return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr[-4000:], "jsonl": str(jsonl)}

    saved = computed_once(tmp_path_factory, "cpu_matrix", compute)
    saved["json"] = json.loads(saved["stdout"]) if saved["stdout"].strip().startswith("{") else None
    saved["jsonl"] = Path(saved["jsonl"])
    return saved
