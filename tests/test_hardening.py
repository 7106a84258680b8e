"""Hardening, round two (issue 14): every case a hostile or careless user found, each with real processes and
real signals. Bounded input (FIFOs, devices, sockets, caps counted while reading), control characters, numeric
options, one writer per results file, watch's report destination, and signals (SIGTERM/SIGHUP/SIGKILL)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_bad_input import assert_usage_error, clean_env, fp8doctor

from fp8doctor import safeio
from fp8doctor.errors import UsageError

ACCELERATE_YAML = "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nmixed_precision: fp8\n"


# ------------------------------------------------------------------ inputs checked before reading

@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    os.mkfifo(path)
    return path


def test_fifo_as_any_config_is_refused_not_read(fifo: Path, tmp_path: Path) -> None:
    """Before: every one of these blocked forever in open() (nobody writes the FIFO)."""
    env = clean_env(tmp_path)
    for args in (["env", "--config", str(fifo)], ["env", "--accelerate-config", str(fifo)],
                 ["repro", "--config", str(fifo)]):
        assert_usage_error(fp8doctor(args, env, tmp_path, timeout=60), "is a FIFO (named pipe), not a regular file")
    p = fp8doctor(["env"], clean_env(tmp_path, ACCELERATE_CONFIG_FILE=str(fifo)), tmp_path, timeout=60)
    assert_usage_error(p, "ACCELERATE_CONFIG_FILE points at")
    assert "FIFO" in p.stderr


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_device_as_config_is_refused(device: str, tmp_path: Path) -> None:
    """Before: read until MemoryError, a traceback and exit 1."""
    env = clean_env(tmp_path)
    assert_usage_error(fp8doctor(["env", "--config", device], env, tmp_path, timeout=60),
                       "is a character device, not a regular file")
    p = fp8doctor(["env"], clean_env(tmp_path, ACCELERATE_CONFIG_FILE=device), tmp_path, timeout=60)
    assert_usage_error(p, "character device")


def test_socket_as_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        assert_usage_error(fp8doctor(["env", "--config", str(path)], clean_env(tmp_path), tmp_path, timeout=60),
                           "is a socket")


def test_matrix_out_fifo_or_device_is_refused_before_any_run(fifo: Path, tmp_path: Path) -> None:
    """Before: `--out FIFO` hung in open(); `--resume --out /dev/zero` read until memory ran out."""
    env = clean_env(tmp_path)
    small = ["--backend", "torchao", "--recipe", "tensorwise", "--entry", "native", "--steps", "2"]
    for out, extra in ((fifo, []), ("/dev/full", []), ("/dev/zero", ["--resume"])):
        p = fp8doctor(["matrix", *small, "--out", str(out), *extra], env, tmp_path, timeout=60)
        assert_usage_error(p, "not a regular file")


def test_report_out_dir_that_is_a_fifo(fifo: Path, tmp_path: Path) -> None:
    p = fp8doctor(["report", "--out-dir", str(fifo)], clean_env(tmp_path), tmp_path, timeout=60)
    assert_usage_error(p, "it exists and is not a directory")


def test_report_files_never_written_into_a_fifo(tmp_path: Path) -> None:
    """A FIFO where a report file goes: refused on the open descriptor, no hang."""
    target = tmp_path / "r.md"
    os.mkfifo(target)
    with pytest.raises(UsageError, match="is a FIFO"):
        safeio.open_write(target)


def test_size_cap_is_counted_while_reading(tmp_path: Path) -> None:
    """/proc files say size 0: the cap must hold on the bytes read, and stop reading right after it."""
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(UsageError, match="over the 64-byte limit"):
        safeio.read_capped("/proc/self/maps", 64)
    ok = tmp_path / "ok.yaml"
    ok.write_text(ACCELERATE_YAML)
    assert safeio.read_capped(ok, 1024) == ACCELERATE_YAML.encode()


def test_a_path_swapped_for_a_fifo_after_the_check_cannot_hang(tmp_path: Path) -> None:
    """The open itself is non-blocking and re-checked on the descriptor (time-of-check/time-of-use)."""
    path = tmp_path / "swap.yaml"
    os.mkfifo(path)
    code = ("import os, fp8doctor.safeio as s\n"
            "s.check_regular = lambda *a, **k: True\n"  # as if the path was a file when it was checked
            f"try:\n    s.read_capped({str(path)!r}, 100)\nexcept Exception as e:\n    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "is a FIFO" in p.stdout, (p.stdout, p.stderr)
