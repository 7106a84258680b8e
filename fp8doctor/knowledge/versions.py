"""Reading a version string as the engine does: one tolerant parser, and the (major, minor) release a rule keys on."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version


def parse_version(version: str | None) -> Version | None:
    """A version string as packaging reads it; None when absent or not a valid version."""
    try:
        return Version(version) if version else None
    except InvalidVersion:
        return None


def release(version: str | None) -> tuple[int, int] | None:
    """(major, minor) of a version string; None when absent or invalid."""
    parsed = parse_version(version)
    if parsed is None:
        return None
    r = parsed.release
    return (r[0], r[1] if len(r) > 1 else 0)
