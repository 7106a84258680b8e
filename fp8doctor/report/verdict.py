"""The report's one verdict: a pure function of its parts' statuses, so the headline can never contradict them
(a reproduced bug in the user's stack or a warning never sits under "no problem found"). The parts judge the
user's setup; the reference bug shown only as what these library versions do (report/exposure.py) is one extra
sentence, never a problem."""

from __future__ import annotations

from collections.abc import Sequence

from fp8doctor.verdicts import ERROR, FAIL, SKIP, WARN, worst_exit

DEMO = ("The reference bug still reproduces with these library versions; it is shown below as what they do, "
        "not counted against your setup.")


def headline(parts: Sequence[tuple[str, str]], demo: bool = False) -> tuple[str, int]:
    """(one or two sentences, exit code) from (part title, status) pairs, status one of verdicts.PART_STATUSES;
    demo: the repro showed the reference bug outside the user's stack."""
    text, code = _judged(parts)
    return (f"{text} {DEMO}" if demo else text), code


def _judged(parts: Sequence[tuple[str, str]]) -> tuple[str, int]:
    def titles(status: str) -> str:
        return ", ".join(t for t, s in parts if s == status)

    failed, errored, warned, skipped = (titles(s) for s in (FAIL, ERROR, WARN, SKIP))
    code = worst_exit(s for _, s in parts)
    if failed or errored:
        text = "FP8 problems found"
        text += f" in: {failed}" if failed else ""
        text += f"{'; ' if failed else ' '}could not run: {errored}" if errored else ""
        if warned:
            text += f"; warnings in: {warned}"
        return text + ".", code
    if warned:
        return f"No blocking FP8 problem in your setup, but warnings in: {warned}.", code
    if not parts or all(s == SKIP for _, s in parts):
        return "Nothing could be checked on this machine (see below why).", code
    if skipped:
        return f"No FP8 problem found in your setup (in what could run here); not checked: {skipped}.", code
    return "No FP8 problem found in your setup: every part passed.", code
