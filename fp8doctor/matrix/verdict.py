"""One check's verdict on a matrix cell (matrix/checks.py, matrix/layers.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fp8doctor.findings import Level


@dataclass(frozen=True)
class Verdict:
    check: str
    level: Level
    detail: str
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["level"] = self.level.value
        return d
