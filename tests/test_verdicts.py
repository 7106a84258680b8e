"""The one verdict vocabulary: every word a classifier gives is defined once, with a meaning and an exit code."""

from __future__ import annotations

from fp8doctor import verdicts
from fp8doctor.findings import Level
from fp8doctor.matrix import checks
from fp8doctor.runs.verdicts import classify


def test_every_word_has_a_meaning_and_an_exit_code() -> None:
    groups = (verdicts.RUN_VERDICTS, verdicts.WATCH_VERDICTS, verdicts.CELL_STATUSES, verdicts.PART_STATUSES)
    for group in groups:
        for name in group:
            assert verdicts.meaning(name) and verdicts.exit_code(name) in (0, 1)
    assert set(verdicts.WATCH_SEVERITY) == set(verdicts.WATCH_VERDICTS)


def test_exit_codes_follow_the_words() -> None:
    assert verdicts.exit_code(verdicts.FP8_ACTIVE) == 0
    assert verdicts.exit_code(verdicts.SILENT_BF16) == 1
    assert verdicts.exit_code("no-such-word") == 1
    assert verdicts.worst_exit([verdicts.PASS, verdicts.WARN, verdicts.SKIP]) == 0
    assert verdicts.worst_exit([verdicts.PASS, verdicts.FAIL]) == 1
    assert verdicts.worst_exit([]) == 0


def test_classifiers_give_vocabulary_words() -> None:
    skipped = classify({"outcome": "skipped", "skip_reason": "no GPU"})
    assert skipped.name == verdicts.NOT_APPLICABLE
    assert checks.cell_status([checks.Verdict("finished", Level.SKIP, "no GPU")]) == verdicts.SKIP
    assert checks.cell_status([checks.Verdict("finished", Level.OK, "ok")]) in verdicts.CELL_STATUSES
