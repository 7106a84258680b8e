"""A finding is data: what a check saw, how bad it is, and how to fix it. Rendering lives elsewhere."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from fp8doctor import verdicts


class Level(str, Enum):
    """A finding's level: the words, meanings and exit codes of fp8doctor.verdicts (the one vocabulary)."""

    OK = verdicts.OK
    WARN = verdicts.WARN
    FAIL = verdicts.FAIL
    SKIP = verdicts.SKIP
    ERROR = verdicts.ERROR

    @property
    def exit_code(self) -> int:
        return verdicts.VOCABULARY[self.value].exit_code


@dataclass(frozen=True)
class Finding:
    id: str
    level: Level
    title: str
    detail: str = ""
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["level"] = self.level.value
        return d


Check = Callable[[dict[str, Any]], Iterable[Finding] | Finding | None]


def run_checks(checks: Iterable[Check], facts: dict[str, Any]) -> list[Finding]:
    """Run every check on the facts; a check that raises becomes an `error` finding, never a crash."""
    out: list[Finding] = []
    for check in checks:
        name = getattr(check, "__name__", repr(check))
        try:
            result = check(facts)
        except Exception as exc:  # noqa: BLE001 - a crashing check is a result
            last = traceback.extract_tb(exc.__traceback__)[-1]
            out.append(
                Finding(
                    id=f"check-crashed.{name}",
                    level=Level.ERROR,
                    title=f"The check {name} crashed: {type(exc).__name__}: {exc}",
                    detail=f"at {last.filename}:{last.lineno}",
                    fix="Report this as an fp8doctor bug, with the output of `fp8doctor env --format md`.",
                )
            )
            continue
        if result is None:
            continue
        if isinstance(result, Finding):
            out.append(result)
        else:
            out.extend(result)
    return out


def exit_code(findings: Iterable[Finding]) -> int:
    """0 when nothing failed, 1 when any finding failed or a check crashed."""
    return max((f.level.exit_code for f in findings), default=0)


def summary_line(findings: list[Finding]) -> str:
    counts = {lvl: sum(1 for f in findings if f.level is lvl) for lvl in Level}
    parts = [f"{counts[lvl]} {lvl.value}" for lvl in (Level.OK, Level.WARN, Level.FAIL, Level.ERROR, Level.SKIP)]
    verdict = "problems found" if exit_code(findings) else "no blocking problem found"
    return f"{verdict}: " + ", ".join(parts)
