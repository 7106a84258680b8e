"""Which releases the lab observed, and how a release it did not observe is predicted (said, never silent).

`observed.json` lists, per package, every release a lab cell ran (written by `python lab/table.py` from
lab/observations; tests/test_releases.py holds the two equal). A release whose minor the lab ran is predicted from
that cell; one newer than every observed release is predicted as the newest observed, and the output says so; one
older than every observed release, or between two observed minors, is said to be unobserved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fp8doctor.knowledge.versions import parse_version, release

PACKAGES = ("accelerate", "transformers", "torchao", "llamafactory")
OBSERVED_FILE = "observed.json"


@cache
def observed() -> dict[str, tuple[str, ...]]:
    """Per package, the releases the lab observed, oldest first."""
    data = json.loads(resources.files("fp8doctor.knowledge").joinpath(OBSERVED_FILE).read_text())
    return {k: tuple(sorted(v, key=lambda s: parse_version(s) or parse_version("0"))) for k, v in data.items()}


# The probes whose cases the engine predicts: a cell that ran none of them (a frontend's own cell) observed nothing
# of what the engine says about the releases it happened to install.
ENGINE_PROBES = frozenset({"accelerator", "training_args", "reference_patch", "launch_config", "env_reads",
                           "llamafactory"})


# The frontends whose behaviour knowledge/frontends predicts, each observed by its own probe in its own cells.
FRONTEND_PROBES = {"trl": "trl_configs", "peft": "peft_fp8", "axolotl": "axolotl_config"}


def observed_from_records(records: list[Mapping[str, Any]]) -> dict[str, list[str]]:
    """What observed.json must hold for these lab records (cells that could not be installed, or that ran no probe
    the engine predicts, observed nothing; a frontend's releases count where its own probe ran)."""
    out: dict[str, set[str]] = {p: set() for p in (*PACKAGES, *FRONTEND_PROBES)}
    for rec in records:
        probes = set(rec.get("probes") or {})
        if rec.get("unresolvable"):
            continue
        names = [*(PACKAGES if ENGINE_PROBES & probes else ()), *(n for n, p in FRONTEND_PROBES.items() if p in probes)]
        for name in names:
            version = (rec.get("versions") or {}).get(name)
            if version:
                out[name].add(str(version))
    return {k: sorted(v, key=lambda s: parse_version(s) or parse_version("0")) for k, v in out.items()}


@dataclass(frozen=True)
class Coverage:
    status: str  # absent | invalid | observed | same-minor | newer | older | between | no-cell
    note: str | None  # what the output says about it (None: an observed release, nothing to say)


def coverage(package: str, version: str | None) -> Coverage:
    """How the engine treats this release of `package`."""
    if not version:
        return Coverage("absent", None)
    parsed, minor = parse_version(version), release(version)
    if parsed is None or minor is None:
        return Coverage("invalid", f"{package} {version}: not a version the engine can read")
    seen = observed().get(package, ())
    if not seen:
        return Coverage("no-cell", f"{package}: no release observed by the lab")
    if any(parse_version(s) == parsed for s in seen):
        return Coverage("observed", None)
    same = [s for s in seen if release(s) == minor]
    if same:
        return Coverage("same-minor",
                        f"{package} {version}: not observed; predicted from its minor's cell ({same[-1]})")
    newest, oldest = seen[-1], seen[0]
    if parsed > (parse_version(newest) or parsed):
        return Coverage("newer", f"{package} {version}: newer than any release observed: predicted as {newest}")
    if parsed < (parse_version(oldest) or parsed):
        return Coverage("older",
                        f"{package} {version}: older than any release observed (oldest: {oldest}): no prediction")
    below = max((s for s in seen if (parse_version(s) or parsed) < parsed), key=lambda s: parse_version(s) or parsed)
    above = min((s for s in seen if (parse_version(s) or parsed) > parsed), key=lambda s: parse_version(s) or parsed)
    return Coverage("between",
                    f"{package} {version}: not observed (the lab ran {below} and {above}): predicted from the rules "
                    "those bound")


def as_observed(versions: Mapping[str, Any]) -> dict[str, Any]:
    """The versions the engine is asked about: a release newer than every observed one becomes the newest observed,
    one older than every observed one becomes unknown (None is 'not installed', so it stays the invalid string)."""
    out = dict(versions)
    for name in PACKAGES:
        cov = coverage(name, versions.get(name))
        if cov.status == "newer":
            out[name] = observed()[name][-1]
        elif cov.status == "older":
            out[name] = f"unobserved-{versions.get(name)}"
    return out


def coverage_notes(versions: Mapping[str, Any]) -> list[str]:
    """One line for each installed release the lab did not observe."""
    return [c.note for c in (coverage(n, versions.get(n)) for n in PACKAGES) if c.note]


ALIASES = {"llama-factory": "llamafactory", "llama_factory": "llamafactory"}


def parse_what_if(items: list[str]) -> dict[str, str]:
    """`PKG==VER` strings as {package: version} for the packages the engine predicts; ValueError (one line) for
    anything else."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, version = item.partition("==")
        name = ALIASES.get(name.strip().lower(), name.strip().lower())
        if not sep or name not in PACKAGES:
            raise ValueError(f"--what-if {item!r}: expected PKG==VERSION with PKG one of {', '.join(PACKAGES)}")
        if parse_version(version.strip()) is None:
            raise ValueError(f"--what-if {item!r}: {version.strip()!r} is not a version")
        out[name] = version.strip()
    return out
