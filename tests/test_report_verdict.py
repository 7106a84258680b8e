"""The report's headline is a pure function of its parts' statuses: a reproduced bug, a failed check or a warning
never sits under a "no problem found" headline. Tested on dicts of section data; one real CPU report in
test_report.py holds a real run to the same rule."""

from __future__ import annotations

import itertools

import pytest

from fp8doctor.knowledge.capability import TE_INSTALL
from fp8doctor.report.notes import Notes, sentences
from fp8doctor.report.sections import Summary, status_of
from fp8doctor.report.verdict import DEMO, headline
from fp8doctor.verdicts import ERROR, FAIL, OK, PART_STATUSES, SKIP, WARN

TITLES = ("Environment", "Reproduction", "FP8 matrix")
CLEAN = ("No FP8 problem found", "Nothing could be checked")


@pytest.mark.parametrize("statuses", list(itertools.product(PART_STATUSES, repeat=3)))
def test_headline_never_contradicts_a_part(statuses) -> None:
    text, code = headline(list(zip(TITLES, statuses, strict=True)))
    bad = {FAIL, ERROR} & set(statuses)
    if bad or WARN in statuses:
        assert not text.startswith(CLEAN), (statuses, text)
        for title, status in zip(TITLES, statuses, strict=True):
            if status in (FAIL, ERROR, WARN):
                assert title in text, (statuses, text)  # every part with something to say is named
    assert code == (1 if bad else 0)
    if set(statuses) == {OK}:
        assert text == "No FP8 problem found in your setup: every part passed."
    if SKIP in statuses and not bad and WARN not in statuses and OK in statuses:
        assert "not checked" in text
    # The reference bug shown outside the user's stack adds its sentence and changes nothing else.
    shown, shown_code = headline(list(zip(TITLES, statuses, strict=True)), demo=True)
    assert (shown, shown_code) == (f"{text} {DEMO}", code)


SUMMARIES = [
    ({"found": ["buggy patch: reproduced, ValueError"]}, True, FAIL),
    ({"off": ["Trainer + env: silent-bf16"]}, True, FAIL),
    ({"warnings": ["`native_agreement` in 2 cells"]}, True, WARN),
    ({"worked": ["Accelerator(mixed_precision='fp8')"]}, True, OK),
    ({"unchecked": [("te:delayed via native", "Transformer Engine is not installed.")]}, False, SKIP),
    ({"found": ["x"], "warnings": ["y"]}, True, FAIL),
    ({"warnings": ["y"]}, False, WARN),  # a warning is said even when nothing ran
]


@pytest.mark.parametrize(("fields", "ran", "status"), SUMMARIES)
def test_part_status_from_what_it_found(fields, ran, status) -> None:
    summary = Summary(**fields)
    assert status_of(summary, ran) == status
    text, _ = headline([("Part", status_of(summary, ran))])
    if summary.found or summary.off or summary.warnings:
        assert not text.startswith(CLEAN) and "Part" in text


TE = f"Transformer Engine is not installed; on a CUDA machine install it with `{TE_INSTALL}`."
GPU = "No CUDA GPU is visible, so per-tensor FP8 (delayed/current scaling) cannot run on hardware."


def test_each_reason_is_said_once_and_cited_by_number() -> None:
    assert sentences(f"{TE} {GPU}") == [TE, GPU]
    notes = Notes()
    refs = [notes.cite(f"{TE} {GPU}", f"matrix cell {i}") for i in range(16)]
    refs.append(notes.cite(TE, "repro: accelerator path"))
    assert refs[0] == "[1, 2]" and refs[-1] == "[1]"
    text = "\n".join(notes.lines())
    assert text.count("Transformer Engine is not installed") == 1 and text.count("No CUDA GPU") == 1
    assert "and 14 more" in text  # 17 things kept from running by the TE sentence, 3 named
