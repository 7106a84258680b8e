"""How configs spell settings: one reading of a YAML/JSON value as a flag, for every rule and prediction."""

from __future__ import annotations

from typing import Any

FALSE_WORDS = ("", "false", "0", "no", "off", "none", "null")


def truthy(value: Any) -> bool:
    """A boolean setting as YAML/JSON configs spell it (strings "true"/"1"/"yes"/"on" included)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def given(value: Any) -> bool:
    """A key that is set to something (a path, a list, a section): not absent, empty, false or a string spelling
    false."""
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_WORDS
    return bool(value)
