"""Expensive real runs computed once per test session, also under pytest-xdist."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temp root, shared by every xdist worker of this session."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def computed_once(tmp_path_factory: pytest.TempPathFactory, name: str, compute: Callable[[], Any]) -> Any:
    """The first worker computes and writes JSON under the session's shared temp root while holding a lock;
    the others wait on the lock and read it."""
    root = shared_root(tmp_path_factory)
    data, lock = root / f"{name}.json", root / f"{name}.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if not data.exists():
            data.write_text(json.dumps(compute(), default=str))
        return json.loads(data.read_text())
