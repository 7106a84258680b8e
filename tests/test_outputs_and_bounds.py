"""Round three (issue 20): outputs written whole or not at all (a full disk, a closed stdout, `ulimit -f`, a
refused command after `--output`), bounded YAML expansion, probes killed as a process tree, a probe's answer
validated like any other input, and no rank left behind when `watch` is SIGKILLed, even one in its own session."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from dispositions import default_signals
from test_bad_input import clean_env
from test_faults import live_processes_with

from fp8doctor.facts.probes import finish_probes, probe_code, start_probes
from fp8doctor.system import interpreter, lifeline, safeio

PY = sys.executable


def fp8doctor(args: list[str], tmp: Path, timeout: float = 120, **popen: object) -> subprocess.CompletedProcess:
    p = subprocess.run([PY, "-m", "fp8doctor", *args], capture_output="stdout" not in popen, text=True,
                       timeout=timeout, env=clean_env(tmp), cwd=tmp, stdin=subprocess.DEVNULL, **popen)
    assert "Traceback" not in (p.stderr or ""), p.stderr
    return p


def one_error_line(p: subprocess.CompletedProcess, words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.count("\n") == 1 and words in p.stderr, p.stderr


# ------------------------------------------------------------------ outputs

def test_watch_output_is_untouched_when_the_command_is_refused(tmp_path: Path) -> None:
    """Before: `watch --output FILE -- no-such-command` refused with exit 2 but had emptied FILE already."""
    out = tmp_path / "report.md"
    out.write_text("last week's report\n")
    p = fp8doctor(["watch", "--output", str(out), "--", "no-such-command-fp8doctor"], tmp_path)
    one_error_line(p, "no-such-command-fp8doctor")
    assert out.read_text() == "last week's report\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["report.md"]  # no temporary file left


def test_stdout_on_a_full_disk_is_one_line_exit_2(tmp_path: Path) -> None:
    """Before: `env > /dev/full` ended in a traceback (OSError: No space left on device)."""
    with open("/dev/full", "w") as full:
        p = fp8doctor(["env"], tmp_path, stdout=full, stderr=subprocess.PIPE)
    one_error_line(p, "No space left on device")


def test_closed_stdout_is_one_line_exit_2(tmp_path: Path) -> None:
    """Before: `env >&-` exited 0 and wrote nothing anywhere."""
    p = subprocess.run(f"exec {PY} -m fp8doctor env >&-", shell=True, capture_output=True, text=True, timeout=120,
                       env=clean_env(tmp_path), cwd=tmp_path)
    one_error_line(p, "stdout is closed")


def _file_limit(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def test_env_json_cut_by_ulimit_f_is_exit_2(tmp_path: Path) -> None:
    """Before: under `ulimit -f` `env --format json` exited 0 with cut, invalid JSON (Python's buffered stdout
    drops the EFBIG)."""
    out = tmp_path / "env.json"
    with open(out, "w") as fh:
        p = fp8doctor(["env", "--format", "json"], tmp_path, stdout=fh, stderr=subprocess.PIPE,
                      preexec_fn=lambda: _file_limit(2048))
    one_error_line(p, "File too large")
    with pytest.raises(ValueError):
        json.loads(out.read_text())  # what was cut is cut; the exit code and the line say so


ATOMIC = """
import resource, sys
from fp8doctor.system import safeio
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    with safeio.open_write(sys.argv[1]) as fh:
        fh.write("new " * 100_000)
except OSError as exc:
    print("refused:", exc.strerror)
"""


def test_report_files_are_written_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old report\n")
    p = subprocess.run([PY, "-c", ATOMIC, str(target)], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "refused: File too large", p.stdout + p.stderr
    assert target.read_text() == "old report\n"
    with pytest.raises(RuntimeError), safeio.open_write(target) as fh:
        fh.write("half")
        raise RuntimeError("the renderer failed")
    assert target.read_text() == "old report\n"
    with safeio.open_write(target) as fh:
        fh.write("new report\n")
    assert target.read_text() == "new report\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["report.md"]


# ------------------------------------------------------------------ YAML expansion

def test_yaml_aliases_of_one_long_string_are_refused_fast(tmp_path: Path) -> None:
    """Before: a 580 KB LLaMA-Factory YAML of aliases to one 400 KB string passed the alias guard (it counts
    values) and ran for over 120 s."""
    config = tmp_path / "train.yaml"
    lines = ["stage: sft", "fp8: true", f"base: &s {'x' * 400_000}", "many:"]
    lines += ["  - *s" for _ in range(30_000)]
    config.write_text("\n".join(lines) + "\n")
    assert 500_000 < config.stat().st_size < 1 << 20
    t0 = time.monotonic()
    p = fp8doctor(["env", "--config", str(config)], tmp_path, timeout=120)
    one_error_line(p, "too large once expanded")
    assert time.monotonic() - t0 < 60  # a hang guard: refused before anything walks the expanded text


# ------------------------------------------------------------------ probes

def test_a_hanging_probe_is_killed_with_its_children(tmp_path: Path) -> None:
    """Before: a probe was killed alone on timeout; a child it started lived on."""
    mark = f"PROBE_MARK={uuid.uuid4().hex}"
    name, value = mark.split("=")
    body = ("import os, subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
            "time.sleep(300)\nresult = {}")
    started = start_probes({"hangs": probe_code(body)}, env={**os.environ, name: value})
    deadline = time.monotonic() + 60
    while len(live_processes_with(mark)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    out = finish_probes(started, timeout_s=0.5)
    assert out["hangs"]["ok"] is False and "timed out" in out["hangs"]["error"]
    assert live_processes_with(mark) == []


def test_python_target_script_is_stopped_with_its_children(tmp_path: Path) -> None:
    """Before: a `--python` target that is a shell script sleeping forever was stopped after 60 s, its `sleep`
    child lived on (and held the pipe)."""
    mark = uuid.uuid4().hex
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nsleep 300 {mark} 2>/dev/null &\nsleep 300\n")
    script.chmod(0o755)
    t0 = time.monotonic()
    code, _, _ = lifeline.run_captured([str(script)], 1.0)
    assert code is None and time.monotonic() - t0 < 30
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert mark not in ps


@pytest.mark.parametrize("answer", ['{"packages": 3, "python_tuple": "3.11"}', "[1, 2]", '"text"',
                                    '{"packages": {}, "python_tuple": [3, true], "executable": "x", "python": "3"}'])
def test_python_target_answer_with_wrong_types_is_one_line(answer: str, tmp_path: Path) -> None:
    """Before: a probe line with the wrong types gave a traceback."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\necho '{interpreter.MARKER}{answer}'\n")
    script.chmod(0o755)
    p = fp8doctor(["--python", str(script), "env"], tmp_path)
    one_error_line(p, "malformed")


def test_probe_answer_that_is_no_object_is_an_error_fact() -> None:
    out = finish_probes(start_probes({"list": probe_code("result = [1, 2]"),
                                      "big": probe_code("result = {'x': 'y' * 100000, 'n': float('nan')}")}), 60)
    assert out["list"]["ok"] is False and "not an object" in out["list"]["error"]
    assert out["big"]["ok"] and len(out["big"]["result"]["x"]) == safeio.MAX_TEXT


# ------------------------------------------------------------------ no orphan

SETSID_RANK = ("import subprocess, sys, time; "
               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True); "
               "print('started', flush=True); time.sleep(300)")


def test_watch_killed_with_sigkill_takes_a_rank_in_its_own_session(tmp_path: Path) -> None:
    """Before: a rank that left the command's group with setsid (torchrun's workers do) outlived a SIGKILLed
    watch: the watchdog killed only its own group."""
    mark = f"HARDEN_MARK={uuid.uuid4().hex}"
    name, value = mark.split("=")
    proc = subprocess.Popen([PY, "-m", "fp8doctor", "watch", "--", PY, "-c", SETSID_RANK], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env(tmp_path, **{name: value}), cwd=tmp_path,
                            stdin=subprocess.DEVNULL, preexec_fn=default_signals)
    deadline = time.monotonic() + 120
    while len(live_processes_with(mark)) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # fp8doctor, its watchdog, the command, the rank in its own session
    assert len(live_processes_with(mark)) >= 4, proc.poll()
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while live_processes_with(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_processes_with(mark) == []
