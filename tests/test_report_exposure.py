"""The report judges the user's setup: the reference bug counts against it only where the user's stack contains
the buggy path (an installed trainer framework patches Accelerator.__init__, or the watched command raised
Accelerate's FP8 ValueError); otherwise the repro is shown as what these library versions do, and the headline
and exit code say the setup is healthy. The source scan runs for real in child interpreters."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fp8doctor.knowledge.predict import ERROR_NEW
from fp8doctor.report import exposure
from fp8doctor.report.notes import Notes
from fp8doctor.report.sections import Section, Summary, apply_exposure, status_of
from fp8doctor.report.verdict import DEMO, headline
from fp8doctor.verdicts import FAIL, OK, RAISED, SILENT_BF16, WARN

PATCHED = '''\
from accelerate import Accelerator

_original = Accelerator.__init__


def _init_with_recipe(self, *args, **kwargs):
    kwargs.setdefault("kwargs_handlers", [])
    return _original(self, *args, **kwargs)


Accelerator.__init__ = _init_with_recipe
'''
CLEAN = "from accelerate import Accelerator\n\n\ndef build():\n    return Accelerator(mixed_precision='fp8')\n"


def _framework(root: Path, trainer_source: str) -> Path:
    """A folder holding a package named `llamafactory` (never imported: the scan only reads it)."""
    pkg = root / "llamafactory" / "train" / "sft"
    pkg.mkdir(parents=True)
    for folder in (root / "llamafactory", root / "llamafactory" / "train", pkg):
        (folder / "__init__.py").write_text("raise RuntimeError('the scan must not import this')\n")
    (pkg / "trainer.py").write_text(trainer_source)
    return root


def _scan(path_dir: Path | None, python: str = sys.executable) -> dict:
    env = dict(os.environ, PYTHONPATH=str(path_dir)) if path_dir else dict(os.environ)
    src = Path(__file__).resolve().parents[1] / "fp8doctor" / "system" / "interpreter.py"
    code = f"import runpy, json; m = runpy.run_path({str(src)!r}); print(json.dumps(m['accelerator_patches']()))"
    p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_the_scan_finds_a_patch_of_accelerator_init_without_importing_the_framework(tmp_path) -> None:
    found = _scan(_framework(tmp_path / "patched", PATCHED))["llamafactory"]
    line = PATCHED.splitlines().index("Accelerator.__init__ = _init_with_recipe") + 1
    assert found["patches"] == [f"llamafactory/train/sft/trainer.py:{line}"] and found["files_read"] == 4
    clean = _scan(_framework(tmp_path / "clean", CLEAN))["llamafactory"]
    assert clean["patches"] == [] and clean["files_read"] == 4


def test_the_scan_reads_a_real_trl_release_and_finds_no_patch() -> None:
    cells = sorted(Path.home().glob(".cache/fp8doctor-lab/cells/trl*/bin/python"))
    if not cells:
        pytest.skip("no lab cell with trl here (lab/venvs.py ensure_cell builds one)")
    trl = _scan(None, str(cells[0]))["trl"]
    assert trl["version"] and trl["files_read"] > 20 and trl["patches"] == []


def test_env_json_carries_the_scan(tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(_framework(tmp_path, PATCHED)))
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "env", "--format", "json"], capture_output=True,
                       text=True, timeout=120, env=env)
    facts = json.loads(p.stdout)["facts"]
    assert facts["accelerator_patches"]["llamafactory"]["patches"]
    judged = exposure.judge(facts, None, [])
    assert judged.exposed and "llamafactory/train/sft/trainer.py:" in judged.sentence()


def test_judge_says_how_it_decided() -> None:
    none = {"accelerator_patches": {"llamafactory": None, "axolotl": None,
                                    "trl": {"version": "0.18.0", "files_read": 90, "patches": []}}}
    judged = exposure.judge(none, None, [])
    assert not judged.exposed
    assert "trl 0.18.0 (90 files)" in judged.sentence() and "llamafactory, axolotl not installed" in judged.sentence()
    assert "--watch -- CMD" in judged.sentence()
    raised = {"verdict": RAISED, "error": {"type": "ValueError", "message": ERROR_NEW}}
    assert exposure.judge(none, raised, []).exposed
    other = {"verdict": RAISED, "error": {"type": "ValueError", "message": "something else"}}
    assert not exposure.judge(none, other, []).exposed
    assert "did not raise it (silent-bf16)" in exposure.judge(none, {"verdict": SILENT_BF16}, []).sentence()


def _repro(demo: list[tuple[str, str]], worked: bool = True) -> Section:
    s = Summary(demo=list(demo), worked=["Accelerator(mixed_precision='fp8')"] if worked else [])
    return Section("repro", "Reproduction", status_of(s, True), s)


def test_the_demonstration_counts_only_where_the_stack_contains_the_path() -> None:
    demo = [("found", "buggy patch: reproduced, ValueError"), ("off", "inject if missing: silent-bf16")]
    healthy = _repro(demo)
    apply_exposure(healthy, exposed=False)
    assert healthy.status == OK and healthy.summary.demo == demo and not healthy.summary.found
    text, code = headline([("Environment", WARN), ("Reproduction", healthy.status)], demo=True)
    assert code == 0 and "problems found" not in text and text.endswith(DEMO)
    exposed = _repro(demo)
    apply_exposure(exposed, exposed=True)
    assert exposed.status == FAIL and exposed.summary.found == [demo[0][1]] and exposed.summary.off == [demo[1][1]]
    text, code = headline([("Environment", WARN), ("Reproduction", exposed.status)])
    assert code == 1 and text.startswith("FP8 problems found in: Reproduction")


def test_a_sentence_already_numbered_is_cited_inside_another_text() -> None:
    notes = Notes()
    te = "Transformer Engine is not installed; install it with `pip install x`."
    notes.cite(te, "matrix: te:current via native")
    note = f"Transformer Engine is not usable here ({te}); the runs use torchao's recipe."
    assert notes.cite_inside(note) == "Transformer Engine is not usable here (see [1]); the runs use torchao's recipe."


def test_a_note_without_its_own_full_stop_gets_one_before_what_it_kept_from_running() -> None:
    notes = Notes()
    notes.cite("known CPU limit: a CUDA run takes the casting branch (measured here: RuntimeError: x)", "matrix: a")
    assert list(notes.lines()) == ["1. known CPU limit: a CUDA run takes the casting branch (measured here: "
                                   "RuntimeError: x). Not checked: matrix: a."]


@pytest.mark.parametrize(("value", "shown"), [
    ("fp8", "fp8"), (" fp8 ", "' fp8 '"), ("fp8\u200b", "'fp8\\u200b'"), ("", "''"), ("a b", "a b"),
    ("fp8\t", "'fp8\\t'"),
])
def test_values_are_quoted_where_whitespace_or_invisible_characters_matter(value, shown) -> None:
    from fp8doctor.render.controls import as_written
    from fp8doctor.render.findings import fact_rows

    assert as_written(value) == shown
    facts = {"environ": {"relevant": {"ACCELERATE_MIXED_PRECISION": value}},
             "precision": {"effective": value}}
    rows = dict(fact_rows(facts))
    assert rows["Effective precision"] == shown
    assert rows["Environment"] == f"ACCELERATE_MIXED_PRECISION={shown}"


def test_env_shows_a_padded_precision_quoted_in_the_facts_as_in_the_finding() -> None:
    env = dict(os.environ, ACCELERATE_MIXED_PRECISION=" fp8 ")
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "env"], capture_output=True, text=True, timeout=120,
                       env=env)
    assert "Effective precision : ' fp8 '" in p.stdout and "ACCELERATE_MIXED_PRECISION=' fp8 '" in p.stdout
    assert "  fp8 \n" not in p.stdout


def test_a_report_where_an_installed_framework_patches_accelerator_init_counts_the_bug(tmp_path, monkeypatch) -> None:
    """The whole report on this machine with a framework on the path whose trainer patches Accelerator.__init__:
    the repro's reproduced bug is now the user's problem (exit 1), and the report says where it was found."""
    from fp8doctor.report.build import Options, build
    from fp8doctor.system import target

    monkeypatch.syspath_prepend(str(_framework(tmp_path / "site", PATCHED)))
    target.snapshot.cache_clear()
    try:
        report = build(Options(out_dir=str(tmp_path / "out"), skip_parts=("matrix",), progress=False))
    finally:
        target.snapshot.cache_clear()
    repro = next(p for p in report.data["parts"] if p["name"] == "repro")
    assert report.data["exposure"]["exposed"]
    assert "llamafactory assigns `Accelerator.__init__` at llamafactory/train/sft/trainer.py:" in \
        report.data["exposure"]["sentence"]
    if any(r["verdict"] == "reproduced" for r in repro["data"]["rows"]):
        assert repro["status"] == "fail" and report.exit_code == 1 and not repro["summary"]["demo"]
        assert report.data["verdict"].startswith("FP8 problems found in: ") and "still reproduces" not in \
            report.data["verdict"]
        first = report.markdown[:report.markdown.index("<details>")]
        assert report.data["exposure"]["sentence"] in first and "reproduced, ValueError" in first
        assert "### The reference bug with these library versions" not in first


def _row(key: str, kind: str, entry: str, verdict: str, expected: bool = True) -> dict:
    err = {"type": "ValueError", "message": ERROR_NEW, "where": "accelerate/accelerator.py:512 in __init__"}
    return {"id": key, "label": key, "kind": kind, "verdict": verdict, "as_expected": expected, "reason": "why",
            "result": {"outcome": "raised" if verdict == "reproduced" else "finished", "spec": {"entry": entry},
                       "error": err if verdict == "reproduced" else None}}


def test_every_row_that_runs_the_patch_is_a_demonstration_and_the_rest_are_yours() -> None:
    from fp8doctor.report.sections import repro_summary

    data = {"backend": "torchao", "recipe": "tensorwise", "rows": [
        _row("buggy_append", "buggy", "buggy_patch_append", "reproduced"),
        _row("buggy_if_missing", "buggy", "buggy_patch_if_missing", "silent-bf16"),
        _row("trainer", "fixed", "trainer", "fp8-active"),
        _row("yours_append", "yours", "buggy_patch_append", "reproduced"),
        _row("yours_if_missing", "yours", "buggy_patch_if_missing", "fp8-active"),
        _row("yours_trainer", "yours", "trainer", "silent-bf16", expected=False),
        _row("accelerator", "fixed", "accelerator", "silent-bf16", expected=False),
    ]}
    s = repro_summary(data)
    assert [line.split(":")[0] for _, line in s.demo] == ["buggy_append", "buggy_if_missing", "yours_append"]
    assert [line.split(":")[0] for line in s.off] == ["yours_trainer", "accelerator"] and not s.found
    assert s.worked == ["trainer"]  # a patched run that reached fp8-active is no fix
    assert status_of(s, True) == FAIL  # your config silently bf16 without any patch is your problem
    assert s.ran == "7 of 7 paths ran (torchao:tensorwise, tiny Llama): 2 reproduced, 3 silent-bf16, 2 fp8-active"


def test_env_warns_where_an_installed_framework_patches_accelerator_init(tmp_path) -> None:
    def env_json(source: str | None) -> dict:
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = str(_framework(tmp_path / str(len(list(tmp_path.iterdir()))), source))
        p = subprocess.run([sys.executable, "-m", "fp8doctor", "env", "--check", "stack.accelerator-patch",
                            "--format", "json"], capture_output=True, text=True, timeout=120, env=env)
        return next(f for f in json.loads(p.stdout)["findings"] if f["id"] == "stack.accelerator-patch")

    patched = env_json(PATCHED)
    assert patched["level"] == "warn" and "llamafactory/train/sft/trainer.py:" in patched["detail"]
    assert env_json(CLEAN)["level"] == "ok"
    if not any(importlib.util.find_spec(m) for m in ("llamafactory", "axolotl", "trl")):
        assert env_json(None)["level"] == "skip"
