"""Hardening, round two (issue 14): every case a hostile or careless user found, each with real processes and
real signals. Bounded input (FIFOs, devices, sockets, caps counted while reading), control characters, numeric
options, one writer per results file, watch's report destination, and signals (SIGTERM/SIGHUP/SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from dispositions import default_signals
from test_bad_input import assert_usage_error, clean_env, fp8doctor
from test_faults import SMALL, live_processes_with, workers_alive

from fp8doctor.system import safeio
from fp8doctor.system.errors import UsageError


def wait_for(condition: Callable[[], object], failure: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.1)


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
    code = ("import os, fp8doctor.system.safeio as s\n"
            "s.check_regular = lambda *a, **k: True\n"  # as if the path was a file when it was checked
            f"try:\n    s.read_capped({str(path)!r}, 100)\nexcept Exception as e:\n    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "is a FIFO" in p.stdout, (p.stdout, p.stderr)


# ------------------------------------------------------------------ numeric options

NUMERIC_CASES = [
    (["matrix", "--timeout", "nan", "--out", "OUT"], "--timeout must be a positive number of seconds (got nan)"),
    (["matrix", "--timeout", "inf", "--out", "OUT"], "--timeout must be a positive number of seconds (got inf)"),
    (["matrix", "--timeout", "1e9", "--out", "OUT"], "--timeout must be at most 604800 seconds"),
    (["matrix", "--steps", "1000000000", "--out", "OUT"], "--steps must be at most 10000"),
    (["matrix", "--workers", "100000", "--out", "OUT"], "--workers must be at most 64"),
    (["matrix", "--seed", "-1", "--out", "OUT"], "--seed must be between 0 and 4294967295"),
    (["repro", "--timeout", "nan"], "--timeout must be a positive number of seconds (got nan)"),
    (["repro", "--steps", "10000000"], "--steps must be at most 10000"),
    (["repro", "--workers", "1000000"], "--workers must be at most 64"),
    (["report", "--timeout", "inf", "--out-dir", "TMP/r"], "--timeout must be a positive number of seconds"),
    (["report", "--steps", "99999999", "--out-dir", "TMP/r"], "--steps must be at most 10000"),
    (["report", "--workers", "5000", "--out-dir", "TMP/r"], "--workers must be at most 64"),
    (["watch", "--command-timeout", "nan", "--", "true"],
     "--command-timeout must be a positive number of seconds (got nan)"),
    (["watch", "--command-timeout=-inf", "--", "true"],
     "--command-timeout must be a positive number of seconds (got -inf)"),
]


@pytest.mark.parametrize(("args", "expected"), NUMERIC_CASES, ids=[" ".join(c[0]) for c in NUMERIC_CASES])
def test_numeric_options_are_finite_positive_and_bounded(args: list[str], expected: str, tmp_path: Path) -> None:
    """Before: nan/inf timeouts and absurd step or worker counts were accepted and started runs."""
    args = [a.replace("TMP", str(tmp_path)).replace("OUT", str(tmp_path / "m.jsonl")) for a in args]
    assert_usage_error(fp8doctor(args, clean_env(tmp_path), tmp_path, timeout=60), expected)
    assert not (tmp_path / "r").exists() and not (tmp_path / "m.jsonl").exists()


# ------------------------------------------------------------------ one writer per results file

def test_two_matrices_on_one_out_file(tmp_path: Path) -> None:
    """Before: both wrote every cell into the file with no warning. Now the second stops with one line, exit 2,
    and leaves the first one's file alone."""
    out = tmp_path / "m.jsonl"
    marker = f"HARDEN_MARK={uuid.uuid4().hex}"
    env = clean_env(tmp_path, CUDA_VISIBLE_DEVICES="", **dict([marker.split("=")]))
    # The first runs cold with more steps: warm runs of SMALL can finish before the second one starts.
    slow = [*SMALL[:-1], "40", "--cold"]
    first = subprocess.Popen([sys.executable, "-m", "fp8doctor", "matrix", *slow, "--out", str(out)], env=env,
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: workers_alive(marker), "the first matrix started no run")
        second = fp8doctor(["matrix", *SMALL, "--out", str(out)], clean_env(tmp_path, CUDA_VISIBLE_DEVICES=""),
                           tmp_path, timeout=60)
        assert_usage_error(second, f"{out} is being written by another fp8doctor matrix right now")
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-3000:]
        keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
        assert len(keys) == len(set(keys)) == 2
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


# ------------------------------------------------------------------ watch's report destination

PRINTS = "import sys; print('TRAINING' + '-STDOUT'); print('TRAINING' + '-STDERR', file=sys.stderr)"


def test_watch_md_on_stdout_holds_only_the_report(tmp_path: Path) -> None:
    """Before: the command's stdout was interleaved with the Markdown on stdout."""
    p = fp8doctor(["watch", "--format", "md", "--", sys.executable, "-c", PRINTS], clean_env(tmp_path), tmp_path)
    assert p.returncode == 1, p.stderr
    assert p.stdout.startswith("Command: `") and "TRAINING-STDOUT" not in p.stdout
    assert "TRAINING-STDOUT" in p.stderr and "TRAINING-STDERR" in p.stderr


def test_watch_output_file_leaves_the_commands_output_alone(tmp_path: Path) -> None:
    report = tmp_path / "watch.md"
    p = fp8doctor(["watch", "--format", "md", "--output", str(report), "--", sys.executable, "-c", PRINTS],
                  clean_env(tmp_path), tmp_path)
    assert p.returncode == 1, p.stderr
    assert p.stdout == "TRAINING-STDOUT\n" and p.stderr == "TRAINING-STDERR\n"
    assert report.read_text().startswith("Command: `") and "TRAINING-STD" not in report.read_text()


def test_watch_output_fifo_is_refused_before_the_command_runs(fifo: Path, tmp_path: Path) -> None:
    p = fp8doctor(["watch", "--output", str(fifo), "--", sys.executable, "-c", PRINTS], clean_env(tmp_path),
                  tmp_path, timeout=60)
    assert_usage_error(p, "not a regular file")


# ------------------------------------------------------------------ signals: SIGTERM and SIGHUP like Ctrl-C; SIGKILL

def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fp8doctor", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            preexec_fn=default_signals)  # not what this suite inherited (nohup, `&`)


def marked_env(tmp_path: Path, **extra: str) -> tuple[str, dict[str, str], Path]:
    """(marker, environment carrying it, a TMPDIR of its own): leaked processes and temp folders are findable."""
    mark = uuid.uuid4().hex
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    return f"HARDEN_MARK={mark}", clean_env(tmp_path, HARDEN_MARK=mark, TMPDIR=str(tmpdir), **extra), tmpdir


def our_temp(tmpdir: Path) -> list[Path]:
    """fp8doctor's temp folders left in TMPDIR (torch's own caches there are not ours)."""
    return [p for p in tmpdir.iterdir() if p.name.startswith("fp8doctor")]


def none_left(marker: str, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while live_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    return live_processes_with(marker)


SLEEPER = "import time; print('started', flush=True); time.sleep(300)"
IGNORES_SIGINT = ("import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('started', flush=True); "
                  "time.sleep(300)")


def started(proc: subprocess.Popen, marker: str, count: int = 2) -> None:
    """The harness and at least one child of it carry the marker."""
    wait_for(lambda: len(live_processes_with(marker)) >= count or proc.poll() is not None, "nothing started")
    assert proc.poll() is None, proc.communicate()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_watch_stops_its_command_on_sigterm_and_sighup(sig: signal.Signals, code: int, tmp_path: Path) -> None:
    """Before: SIGTERM killed fp8doctor at once; the training ran on under PID 1, no report, temp folder left."""
    marker, env, tmpdir = marked_env(tmp_path)
    proc = start(["watch", "--", sys.executable, "-c", SLEEPER], env, tmp_path)
    started(proc, marker, count=3)  # fp8doctor, its lifeline watchdog, the command
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-3000:]
    assert f"command: stopped by {sig.name}" in out and "Traceback" not in err
    assert none_left(marker) == []
    assert our_temp(tmpdir) == []


def test_watch_ctrl_c_is_130_even_when_the_command_ignores_it(tmp_path: Path) -> None:
    """Before: 143 (the command, ignoring SIGINT, was finally stopped with SIGTERM and watch reported that)."""
    marker, env, tmpdir = marked_env(tmp_path)
    proc = start(["watch", "--", sys.executable, "-c", IGNORES_SIGINT], env, tmp_path)
    started(proc, marker, count=3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "command: interrupted" in out
    assert none_left(marker) == [] and our_temp(tmpdir) == []


def test_watch_killed_with_sigkill_takes_its_command_along(tmp_path: Path) -> None:
    """Before: the command (and anything it started in its group) ran on under PID 1."""
    marker, env, _ = marked_env(tmp_path)
    cmd = f"{sys.executable} -c 'import time; time.sleep(300)' & {sys.executable} -c 'import time; time.sleep(300)'"
    proc = start(["watch", "--", "sh", "-c", cmd], env, tmp_path)
    started(proc, marker, count=5)  # fp8doctor, watchdog, sh, two sleepers
    proc.kill()
    proc.wait()
    assert none_left(marker) == []


def test_matrix_sigterm_keeps_results_then_resume_finishes(tmp_path: Path) -> None:
    """Before: SIGTERM killed the harness and left its worker (and a launcher's ranks) running. Now: the running
    cell is stopped and not recorded, the finished one is kept, temp folders are removed, exit 143; --resume
    runs only the missing cell."""
    marker, env, tmpdir = marked_env(tmp_path, CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "m.jsonl"
    args = ["matrix", *SMALL, "--workers", "1", "--out", str(out)]
    proc = start(args, env, tmp_path)
    wait_for(lambda: out.exists() and out.stat().st_size > 0, "no cell finished", timeout=300)
    wait_for(lambda: workers_alive(marker), "the second cell did not start")
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "fp8doctor matrix: stopped by SIGTERM" in err and "Traceback" not in err
    assert time.monotonic() - t0 < 20  # the running cell is stopped, not waited for
    assert none_left(marker) == [] and our_temp(tmpdir) == []
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["result"]["outcome"] == "finished"
    p = fp8doctor([*args, "--resume", "--format", "json"], env, tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 2


def test_matrix_killed_with_sigkill_leaves_no_worker(tmp_path: Path) -> None:
    """Before: `kill -9` of the matrix left its workers running to the end (seen: 7 orphans)."""
    marker, env, _ = marked_env(tmp_path, CUDA_VISIBLE_DEVICES="")
    proc = start(["matrix", *SMALL, "--workers", "2", "--out", str(tmp_path / "m.jsonl")], env, tmp_path)
    wait_for(lambda: len(workers_alive(marker)) >= 2, "the workers did not start")
    proc.kill()
    proc.wait()
    assert none_left(marker, timeout=10) == []


@pytest.mark.parametrize(("command", "sig"), [("repro", signal.SIGTERM), ("report", signal.SIGHUP)])
def test_repro_and_report_stop_their_runs(command: str, sig: signal.Signals, tmp_path: Path) -> None:
    marker, env, tmpdir = marked_env(tmp_path, CUDA_VISIBLE_DEVICES="")
    args = ["repro", "--steps", "2"] if command == "repro" else ["report", "--quick", "--out-dir", str(tmp_path / "r")]
    proc = start(args, env, tmp_path)
    wait_for(lambda: workers_alive(marker), "no run started", timeout=180)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert f"fp8doctor {command}: stopped by {sig.name}" in err and "Traceback" not in err
    assert none_left(marker) == [] and our_temp(tmpdir) == []


# ------------------------------------------------------------------ control characters

FORGED = "x\n[✓] forged line\r\x1b[2J\x9b31m\u202eend"
RAW = ("\n[✓] forged", "\x1b", "\x9b", "\u202e", "\r")


def assert_no_raw_controls(text: str) -> None:
    assert not any(ch in text for ch in RAW[1:]), repr(text[:2000])
    assert not any(line.lstrip("| -").startswith(("[✓] forged", "forged")) for line in text.splitlines()), text


@pytest.mark.parametrize("fmt", ["text", "md"])
def test_env_values_and_paths_cannot_forge_lines(fmt: str, tmp_path: Path) -> None:
    """Before: a newline or ESC in an environment value or a config path was echoed raw: a forged line in text,
    a forged row in the Markdown table, the terminal cleared."""
    cfg = tmp_path / "a\nforged row | x |\x1b[2J.yaml"
    cfg.write_text("stage: sft\nfinetuning_type: lora\n")
    p = fp8doctor(["env", "--format", fmt, "--config", str(cfg)], clean_env(tmp_path, NVTE_DEBUG=FORGED), tmp_path)
    assert p.returncode in (0, 1), p.stderr
    assert_no_raw_controls(p.stdout)
    assert "\\n[✓] forged line\\r\\e[2J\\x9b31m\\u202eend" in p.stdout
    assert "a\\nforged row" in p.stdout


def test_error_line_with_a_newline_in_the_path_stays_one_line(tmp_path: Path) -> None:
    """Before: the error line split in two (and assert_usage_error's one-line rule failed)."""
    missing = str(tmp_path / "no\nsuch\x1b[31m.yaml")
    assert_usage_error(fp8doctor(["env", "--config", missing], clean_env(tmp_path), tmp_path), "no such file")
    p = fp8doctor(["env"], clean_env(tmp_path, ACCELERATE_CONFIG_FILE=missing), tmp_path)
    assert_usage_error(p, "no\\nsuch\\e[31m.yaml: no such file")
    p = fp8doctor(["matrix", "--backend", "te", "--bogus\nforged"], clean_env(tmp_path), tmp_path)
    assert_usage_error(p, "unrecognized arguments: --bogus\\nforged")


def test_watch_md_command_line_cannot_forge_table_rows(tmp_path: Path) -> None:
    p = fp8doctor(["watch", "--format", "md", "--", sys.executable, "-c", "pass", "\n| forged | row |\x1b[31m"],
                  clean_env(tmp_path), tmp_path)
    assert p.returncode == 1, p.stderr
    assert_no_raw_controls(p.stdout)
    assert not any(line.startswith("| forged") for line in p.stdout.splitlines())


def test_matrix_text_out_path_is_escaped(tmp_path: Path) -> None:
    """TE cells are all skipped without a GPU: the table renders without any run."""
    out = tmp_path / "m\nforged.jsonl"
    p = fp8doctor(["matrix", "--backend", "te", "--out", str(out)], clean_env(tmp_path, CUDA_VISIBLE_DEVICES=""),
                  tmp_path)
    assert p.returncode == 0, p.stderr
    assert "results: " + str(tmp_path) + "/m\\nforged.jsonl" in p.stdout
    assert_no_raw_controls(p.stdout)


REPORT_ENV_ONLY = r"""
import dataclasses, sys
import fp8doctor.report.command as command
from fp8doctor.cli import main
full_build = command.build
# env part only: what is under test is how the report lays values out, not minutes of runs
command.build = lambda opts: full_build(dataclasses.replace(opts, skip_parts=("repro", "matrix")))
sys.exit(main(["report", "--out-dir", sys.argv[1]]))
"""


def test_report_markdown_tables_cannot_be_forged(tmp_path: Path) -> None:
    out_dir = tmp_path / "r"
    p = subprocess.run([sys.executable, "-c", REPORT_ENV_ONLY, str(out_dir)], capture_output=True, text=True,
                       env=clean_env(tmp_path, NVTE_DEBUG=FORGED), timeout=120, cwd=tmp_path)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    md = next(out_dir.glob("*.md")).read_text()
    assert "| NVTE_DEBUG" in md and "\\n[✓] forged line" in md
    assert_no_raw_controls(md)
    assert_no_raw_controls(p.stdout)


# ------------------------------------------------------------------ long values: redaction in linear time

def test_env_with_long_values_finishes(tmp_path: Path) -> None:
    """Before: a 20,000-character environment value took ~15 s, 120,000 did not finish in 10 minutes, a
    100,000-character config value ~40 s (quadratic URL expression). A hang guard, not a speed target: the growth
    itself is measured by benchmarks/redact_speed.py."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text("stage: sft\nfinetuning_type: lora\nrun_name: " + "a" * 100_000 + "\n")
    env = clean_env(tmp_path, NVTE_LONG="b" * 120_000, NCCL_URLISH="https://" + "c:" * 50_000)
    p = fp8doctor(["env", "--config", str(cfg), "--format", "json"], env, tmp_path, timeout=120)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    assert json.loads(p.stdout)["facts"]["environ"]["relevant"]["NVTE_LONG"] == "b" * 120_000
