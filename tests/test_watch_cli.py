"""`fp8doctor watch` on cheap real commands: usage errors, exit codes, timeouts, injection and its isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from dispositions import default_signals

PY = sys.executable


def watch(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "fp8doctor", "watch", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_missing_command_is_one_line_exit_2():
    for args in ([], ["--"], ["--command-timeout", "5"]):
        r = watch(*args)
        assert r.returncode == 2, r
        assert r.stderr.strip().count("\n") == 0 and "no command to watch" in r.stderr
        assert "Traceback" not in r.stderr


def test_command_not_found_is_one_line_exit_2():
    r = watch("--", "no-such-command-fp8doctor")
    assert r.returncode == 2
    assert r.stderr.strip() == "fp8doctor watch: error: command not found: no-such-command-fp8doctor"


def test_bad_timeout_is_exit_2():
    r = watch("--command-timeout", "0", "--", "true")
    assert r.returncode == 2 and "--command-timeout" in r.stderr


def test_non_python_command_has_no_accelerator_and_keeps_its_exit_code():
    r = watch("--format", "json", "--", "sh", "-c", "exit 3")
    assert r.returncode == 3
    result = json.loads(r.stdout)
    assert result["exit_code"] == 3 and result["verdict"] == "no-accelerator-seen"
    assert watch("--", "true").returncode == 1  # ran fine, but FP8 was not active


def test_observer_stays_cheap_and_chains_the_users_sitecustomize(tmp_path: Path):
    user_site = tmp_path / "user_site"
    user_site.mkdir()
    marker = tmp_path / "marker"
    (user_site / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    probe = "import sys; print('MODS', 'torch' in sys.modules, 'accelerate' in sys.modules)"
    r = watch("--format", "json", "--", PY, "-c", probe, env={"PYTHONPATH": str(user_site)})
    assert r.returncode == 1, r.stderr
    assert "MODS False False" in r.stderr  # json mode: the command's stdout goes to stderr
    assert marker.read_text() == "ran"
    result = json.loads(r.stdout)
    assert [h["argv"][0] for h in result["helpers"]] == ["-c"]  # the process was observed


def test_timeout_kills_the_whole_process_group(tmp_path: Path):
    pidfile = tmp_path / "grandchild.pid"
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
        time.sleep(120)
    """)
    start = time.monotonic()
    r = watch("--command-timeout", "3", "--format", "json", "--", PY, "-c", script)
    assert time.monotonic() - start < 60
    assert r.returncode == 124
    result = json.loads(r.stdout)
    assert result["timed_out"] is True and result["signal"] == "SIGTERM"
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(grandchild)
    assert "timed out after 1.0 s" in watch("--command-timeout", "1", "--", "sleep", "30").stdout


def test_deprecated_timeout_spelling_still_limits_the_command_and_says_so():
    r = watch("--timeout", "1", "--", "sleep", "30")
    assert "timed out after 1.0 s" in r.stdout
    assert "--timeout is deprecated here, use --command-timeout" in r.stderr


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_killed_command_reports_the_signal():
    r = watch("--format", "json", "--", PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert r.returncode == 128 + 9
    assert json.loads(r.stdout)["signal"] == "SIGKILL"


def _on_a_terminal(script: str, send: bytes) -> tuple[int, str]:
    """Run `fp8doctor watch -- python -c SCRIPT` on a pseudo-terminal; type SEND once it prints READY."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # child: becomes the terminal's session leader, as in an interactive shell
        default_signals()  # Ctrl-C must work even when this suite was started with SIGINT ignored
        os.execv(PY, [PY, "-m", "fp8doctor", "watch", "--", PY, "-c", script])
    out, sent, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not sent and b"READY" in out:
            os.write(fd, send)
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_keyboard_input_and_ctrl_c_reach_the_command():
    rc, out = _on_a_terminal("print('READY', flush=True); print('GOT', input())", b"hello\n")
    assert "GOT hello" in out and rc == 1  # ran fine; no FP8
    rc, out = _on_a_terminal("import time; print('READY', flush=True); time.sleep(60)", b"\x03")
    assert rc == 130 and "command: killed by SIGINT" in out
