"""`fp8doctor report`: one real quick report (files, sections, plot, redaction), bad usage, and the pure parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from fp8doctor.report import curves

SECRET = "hf_abcdefghijklmnopqrstuvwxyzABCDEF123456"
URL_PASSWORD = "s3cr3tpassw0rd"


def fp8doctor(*args: str, cwd=None, env=None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    # A healthy machine's shell: secrets in variables the report lists, none that asks for FP8.
    env = dict(os.environ, HF_TOKEN=SECRET, WANDB_BASE_URL=f"https://user:{URL_PASSWORD}@example.com/x")
    for name in [k for k in env if k.startswith(("ACCELERATE_", "FP8_"))]:
        env.pop(name)
    t0 = time.monotonic()
    p = fp8doctor("report", "--quick", "--out-dir", str(root / "reports"), cwd=root, env=env)
    return p, root / "reports", time.monotonic() - t0


def test_quick_report_writes_markdown_json_plot_and_jsonl(quick_report) -> None:
    p, out, _ = quick_report
    assert p.returncode in (0, 1), p.stderr[-3000:]
    names = sorted(os.listdir(out))
    stems = {n.split(".")[0].removesuffix("-loss") for n in names}
    assert len(stems) == 1 and next(iter(stems)).startswith("fp8doctor-report-")
    assert sorted(n.split(".", 1)[1] if "-loss" not in n else "png" for n in names) == [
        "json", "matrix.jsonl", "md", "png"]
    for n in names:
        assert str(out / n) in p.stdout  # the command lists what it wrote
    png = next(out / n for n in names if n.endswith(".png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_first_screen_verdict_agrees_with_every_part(quick_report) -> None:
    from fp8doctor.report.notes import sentences
    from fp8doctor.report.verdict import headline

    p, out, _ = quick_report
    md = next(out / n for n in os.listdir(out) if n.endswith(".md")).read_text()
    lines = md.splitlines()
    assert lines[0] == "# fp8doctor report" and lines[2].startswith("**Verdict: ")
    first = md[:md.index("<details>")]
    assert len(first.splitlines()) <= 80, len(first.splitlines())
    data = json.loads(next(out / n for n in os.listdir(out) if n.endswith(".json")).read_text())
    assert data["kind"] == "fp8doctor.report" and data["exit_code"] == p.returncode
    assert [part["name"] for part in data["parts"]] == ["env", "repro", "matrix"]
    # The real run's headline is the pure function of its real parts' statuses, and names every part that
    # found something.
    assert (data["verdict"], data["exit_code"]) == headline([(x["title"], x["status"]) for x in data["parts"]],
                                                            demo=any(x["summary"]["demo"] for x in data["parts"]))
    for part in data["parts"]:
        if part["summary"]["warnings"] or part["summary"]["found"]:
            assert part["title"] in data["verdict"]
    # A healthy CPU machine (no LLaMA-Factory, axolotl or TRL patching Accelerator.__init__): the reproduced
    # reference bug is shown as what these versions do, not as the user's problem; exit 0.
    repro = next(x for x in data["parts"] if x["name"] == "repro")
    assert not data["exposure"]["exposed"] and "llamafactory" in data["exposure"]["sentence"]
    if any(r["verdict"] == "reproduced" for r in repro["data"]["rows"]):
        assert repro["status"] == "ok" and p.returncode == 0 and "problems found" not in data["verdict"]
        assert "### The reference bug with these library versions" in first and "reproduced, ValueError" in first
        assert data["exposure"]["sentence"] in first and "still reproduces" in data["verdict"]
    # Each sentence once: a numbered reason is written once in the whole file and cited by number elsewhere.
    assert md.count("Transformer Engine is not installed") == 1 and "(see [" in md
    said = [s for line in md.splitlines() if not line.startswith("|")
            for s in sentences(line.lstrip("-0123456789. ")) if len(s) > 30]
    assert len(said) == len(set(said)), [s for s in said if said.count(s) > 1]
    assert md.count("no sign of FP8 intent: no config") <= 1 and md.count("trained without error but no FP8") <= 1
    # Each alternative fix its own numbered, fenced block.
    fixes = repro["data"]["fix_blocks"]
    assert fixes and first.count("   ```") == 2 * len(fixes)
    for n, block in enumerate(fixes, 1):
        assert f"{n}. {block['title']}:" in first
    assert "max rel. loss diff vs bf16" in md and "matrix: matrix:" not in md and "Collected in" not in md
    assert "](" not in md and str(out) not in md and "/work/" not in md.replace(str(out), "")
    assert "CPU emulation" in first and "drag that PNG" in first
    matrix = next(part for part in data["parts"] if part["name"] == "matrix")["data"]
    fp8 = [c for c in matrix["cells"] if c["role"] == "fp8" and c["status"] != "skip"]
    assert fp8 and all(c["status"] in ("pass", "warn") for c in fp8), [(c["label"], c["status"]) for c in fp8]
    assert data["loss_curves"]["cells"] and data["loss_curves"]["png"]
    # Progress without a terminal: one line per finished part and per run.
    assert "fp8doctor report: 3/3 parts done" in p.stderr and "fp8doctor repro: 1/" in p.stderr


def test_report_redacts_every_secret(quick_report) -> None:
    p, out, _ = quick_report
    texts = [p.stdout, p.stderr] + [(out / n).read_text() for n in os.listdir(out) if not n.endswith(".png")]
    for text in texts:
        assert SECRET not in text and URL_PASSWORD not in text
    md = next((out / n).read_text() for n in os.listdir(out) if n.endswith(".md"))
    assert "HF_TOKEN" in md and "***REDACTED***" in md


def test_unwritable_out_dir_is_one_line_and_exit_2_before_measuring(tmp_path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    target = "/proc/fp8doctor-reports" if os.geteuid() == 0 else str(locked)
    if os.geteuid() != 0:
        locked.chmod(0o500)
    t0 = time.monotonic()
    p = fp8doctor("report", "--out-dir", target, cwd=tmp_path, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.startswith("fp8doctor report: error: cannot write the report into ")
    assert len(p.stderr.strip().splitlines()) == 1 and p.stdout == ""
    assert time.monotonic() - t0 < 30  # nothing was measured


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--watch"], "--watch needs the command to watch after `--`"),
        (["--", "python", "train.py"], "to watch a command use `--watch -- CMD ...`"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--steps", "1"], "--steps must be at least 2"),
        (["--quick", "--full"], "choose one of --quick and --full"),
        (["--config", "missing.yaml"], "missing.yaml"),
    ],
)
def test_bad_usage(args, needle, tmp_path) -> None:
    p = fp8doctor("report", "--out-dir", str(tmp_path), *args, cwd=tmp_path, timeout=60)
    assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_sparklines_share_a_scale_and_mark_nonfinite() -> None:
    assert curves.sparkline([3.0, 2.0, 1.0]) == "█▅▁"
    assert curves.sparkline([2.0, float("nan"), 1.0], lo=1.0, hi=2.0) == "█!▁"
    matrix = {"cells": [
        {"role": "baseline", "result": {"outcome": "finished", "losses": [4.0, 3.0, 2.0],
                                        "spec": {"entry": "native", "seed": 0, "steps": 3, "size": "tiny"}}},
        {"role": "fp8", "result": {"outcome": "finished", "losses": [4.0, "nan", 1.0],
                                   "spec": {"backend": "torchao", "recipe": "rowwise", "entry": "native", "seed": 0,
                                            "steps": 3, "size": "tiny"}}},
        {"role": "fp8", "result": {"outcome": "skipped", "spec": {"backend": "te", "entry": "native"}}},
    ]}
    pairs = curves.curve_pairs(matrix)
    assert len(pairs) == 1 and pairs[0]["bf16"] == [4.0, 3.0, 2.0]
    assert curves.sparkline_table(pairs) == [["torchao:rowwise", "native", "█!▁", "█▆▃", "-1.00e+00"]]


def test_markdown_without_a_plot_says_how_to_get_one() -> None:
    from fp8doctor.report.markdown import render_markdown
    from fp8doctor.report.sections import Section, Summary

    data = {"verdict": "x", "created_at": "now", "wall_s": 1.0, "gpu": None, "versions": {
            "fp8doctor": "0.1.0", "platform": "p", "python": "3.11", "torch": "2.13.0", "accelerate": "1.15.0",
            "transformers": "5.24.0", "torchao": "0.18.0", "transformer-engine": None},
            "environment": {"HF_TOKEN": "***REDACTED***"}, "schema_version": 1, "exit_code": 0, "options": {}}
    part = Section("matrix", "FP8 matrix", "ok", Summary(ran="2 of 2 cells ran"))
    pairs = [{"label": "torchao:tensorwise", "entry": "native", "fp8": [2.0, 1.0], "bf16": [2.0, 1.5]}]
    md = render_markdown(data, [part], None, pairs, plot_missing=True)
    row = next(line for line in md.splitlines() if line.startswith("| torchao:tensorwise"))
    assert "pip install 'fp8doctor[plot]'" in md and "![" not in md
    assert [c.strip() for c in row.strip("|").split("|")] == ["torchao:tensorwise", "native", "█▁", "█▅", "-5.00e-01"]


def test_watch_part_embeds_fp8doctor_watch_of_a_command(tmp_path) -> None:
    from fp8doctor.report.build import Options, build

    script = tmp_path / "plain.py"
    script.write_text("print('training without Accelerate')\n")
    report = build(Options(out_dir=str(tmp_path / "out"), watch_cmd=[sys.executable, str(script)],
                           watch_timeout=120, skip_parts=("env", "repro", "matrix")))
    part = report.data["parts"][0]
    assert part["name"] == "watch" and part["status"] == "fail"  # no Accelerator seen: FP8 was not active
    assert "<summary>Your command under fp8doctor watch: ❌ fail" in report.markdown
    assert str(script) in report.markdown and part["summary"]["found"]
    assert part["summary"]["ran"].startswith(f"`{sys.executable} {script}`: no-accelerator-seen")  # stdout's line
    assert report.exit_code == 1 and sorted(os.listdir(tmp_path / "out")) == sorted(
        os.path.basename(p) for p in (report.md_path, report.json_path))


def test_report_config_includes_the_lint_of_that_config(tmp_path) -> None:
    from fp8doctor.report.build import Options, build

    config = os.path.join(os.path.dirname(__file__), "..", "repro_configs", "llamafactory_ao_bf16.yaml")
    report = build(Options(out_dir=str(tmp_path / "out"), config_files=[config], skip_parts=("repro", "matrix"),
                           progress=False))
    env = report.data["parts"][0]
    assert env["name"] == "env" and "linted 1 config file(s)" in env["summary"]["ran"]
    assert [c["path"] for c in env["data"]["facts"]["configs"]] == [config]
    # The reference config asks for fp8 with bf16: true: the lint fails, and the headline says so.
    assert env["status"] == "fail" and report.exit_code == 1 and "Environment" in report.data["verdict"]
    assert "precision.effective" in report.markdown


def test_the_readme_report_judges_the_setup_not_the_libraries_plain_paths(tmp_path) -> None:
    """The README's first command (default scope): a matrix cell that fails because of what the installed releases do
    on the matrix's plain path (Accelerate's own torchao config leaving FP8 weights out of the optimizer) is shown
    as a warning with the env check that judges the user's own config, and a healthy machine still exits 0."""
    from fp8doctor.matrix.divergence import LIBRARY_BEHAVIOUR_CHECKS
    from fp8doctor.report.sections import LIBRARY_NOTE

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FP8_"))}
    p = fp8doctor("report", "--out-dir", str(tmp_path / "r"), cwd=tmp_path, env=env)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    data = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    matrix = next(x for x in data["parts"] if x["name"] == "matrix")
    library = [c for c in matrix["data"]["cells"] if c["status"] == "fail"
               and {v["check"] for v in c["verdicts"] if v["level"] == "fail"} <= set(LIBRARY_BEHAVIOUR_CHECKS)]
    other = [c["label"] for c in matrix["data"]["cells"] if c["status"] == "fail" and c not in library]
    assert not other, other
    if library:
        assert matrix["status"] == "warn" and not matrix["summary"]["found"], matrix["summary"]
        assert any(w.endswith(LIBRARY_NOTE) for w in matrix["summary"]["warnings"]), matrix["summary"]["warnings"]
    assert (p.returncode, data["exit_code"]) == (0, 0) and "problems found" not in data["verdict"], data["verdict"]
