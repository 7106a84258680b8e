"""The one verdict vocabulary: every word a run, a matrix cell or a report part ends in, what it means, and the
exit code it maps to. Classifiers (runs/verdicts, watch/verdicts, matrix/checks) decide which word applies;
renderers, exit codes, the report and the pytest plugin read the words from here.

A new word is one `_define` line (name, meaning, exit code) plus the tuple(s) of the commands that can give it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Word:
    name: str
    meaning: str
    exit_code: int  # 0: nothing to report (FP8 did what was asked, or nothing could run); 1: a problem


VOCABULARY: dict[str, Word] = {}


def _define(name: str, meaning: str, exit_code: int) -> str:
    VOCABULARY[name] = Word(name, meaning, exit_code)
    return name


# ---- What one training run did with FP8 (repro rows, watched ranks).
FP8_ACTIVE = _define("fp8-active", "FP8 layers exist and FP8 modules ran in the forward pass", 0)
SILENT_BF16 = _define("silent-bf16", "trained without error, but not in FP8 (no FP8 layer, or FP8 not active)", 1)
FP8_OFF = _define("fp8-off", "trained without error, but in a precision that is neither FP8 nor bf16 (mixed_precision "
                             "'no', i.e. fp32, or 'fp16'): FP8 was off", 1)
REPRODUCED = _define("reproduced", "Accelerate raised the reference report's ValueError (FP8 recipe handler "
                                   "without mixed_precision='fp8')", 1)
RAISED = _define("raised", "building the Accelerator raised an exception", 1)
FAILED = _define("failed", "the run raised, crashed, timed out or produced a non-finite loss", 1)
BF16_BASELINE = _define("bf16-baseline", "the bf16 baseline (no FP8 asked) trained", 0)
NOT_APPLICABLE = _define("not-applicable", "the run cannot happen on this machine; skipped with the reason", 0)
FP8_NOT_TRAINED = _define("fp8-not-trained", "FP8 modules ran, but the optimizer does not hold FP8 layers' weights "
                                            "(prepare() gave them new Parameters): they never train", 1)
NO_ACCELERATOR = _define("no-accelerator-seen", "no watched process built an accelerate.Accelerator", 1)
NO_FORWARD = _define("no-forward-seen", "an Accelerator had FP8 enabled but no forward pass of a prepared model "
                                        "was seen, so FP8 activity is unproven", 1)

# The words each classifier gives.
RUN_VERDICTS = (REPRODUCED, SILENT_BF16, FP8_OFF, FP8_ACTIVE, BF16_BASELINE, NOT_APPLICABLE, FAILED)
WATCH_VERDICTS = (FP8_ACTIVE, SILENT_BF16, FP8_OFF, RAISED, FP8_NOT_TRAINED, NO_ACCELERATOR, NO_FORWARD)
# Worst first: a watched command's overall verdict is its worst rank's.
WATCH_SEVERITY = (RAISED, SILENT_BF16, FP8_OFF, FP8_NOT_TRAINED, NO_ACCELERATOR, NO_FORWARD, FP8_ACTIVE)

# ---- Statuses: a matrix cell's summary of its checks, and a report part's.
PASS = _define("pass", "every check of the matrix cell passed", 0)
WARN = _define("warn", "passed with a warning (a cell not bit-identical to native or FP8 slower than bf16; a "
                       "warning finding)", 0)
FAIL = _define("fail", "a check failed", 1)
SKIP = _define("skip", "could not run on this machine; skipped with the reason", 0)
OK = _define("ok", "the report part found no blocking problem", 0)
ERROR = _define("error", "the part's own code could not run; the reason is recorded", 1)

CELL_STATUSES = (PASS, WARN, FAIL, SKIP)
PART_STATUSES = (OK, WARN, FAIL, ERROR, SKIP)


NOT_FP8 = (SILENT_BF16, FP8_OFF)  # trained without error, FP8 not on


def not_fp8_word(mixed_precision: str | None) -> str:
    """The word for a run that trained without FP8, from the precision it ran in: only bf16 (or an fp8 request
    whose layers did not convert, which trains in the bf16 autocast) is "silent-bf16"."""
    return FP8_OFF if mixed_precision in ("no", "fp16", "fp32") else SILENT_BF16


def precision_words(mixed_precision: str | None) -> str:
    """A precision as a reader says it: 'no' is no mixed precision, i.e. fp32."""
    if mixed_precision in (None, "no"):
        return "fp32 (mixed_precision 'no')"
    return str(mixed_precision)


def meaning(name: str) -> str:
    return VOCABULARY[name].meaning


def exit_code(name: str) -> int:
    """The exit code one word maps to (an unknown word is a problem: 1)."""
    word = VOCABULARY.get(name)
    return 1 if word is None else word.exit_code


def worst_exit(names: Iterable[str]) -> int:
    """1 when any of the words is a problem, else 0."""
    return max((exit_code(n) for n in names), default=0)


def is_problem(name: str) -> bool:
    return exit_code(name) != 0
