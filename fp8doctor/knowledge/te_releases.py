"""Transformer Engine releases as read from their own sources by the static TE lab (lab/te), and Accelerate x TE.

The data is te_releases.json, written by `python lab/te/derive.py` from lab/observations/te and
lab/observations/accelerate_te; tests/test_te_releases.py holds it equal to what the observations say.
Nothing here imports Transformer Engine.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from packaging.version import Version

from fp8doctor.knowledge.versions import parse_version

MXFP8_OPTION = "use_mxfp8_block_scaling"
# Problem kinds that stop Accelerate's TE path (the others: deprecated, recipe-field, see lab/te/README.md).
BREAKING = ("missing", "not-loaded", "argument", "unverified")


@functools.lru_cache(maxsize=1)
def data() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("te_releases.json").read_text(encoding="utf-8"))



def releases() -> list[str]:
    """Observed TE releases, oldest first."""
    return sorted(data()["te_releases"], key=Version)


def newest() -> str:
    return releases()[-1]


def _nearest(version: str | None, observed: list[str]) -> str | None:
    """The observed release of the same major.minor, else the newest observed one below; None if none is."""
    v = parse_version(version)
    if v is None:
        return None
    same = [r for r in observed if Version(r).release[:2] == v.release[:2]]
    if same:
        return same[-1]
    below = [r for r in observed if Version(r) <= v]
    return below[-1] if below else None


def release_for(version: str | None) -> str | None:
    return _nearest(version, releases())


def release(version: str | None) -> dict[str, Any] | None:
    r = release_for(version)
    return data()["te_releases"][r] if r else None


def first_release_with_autocast(name: str) -> str | None:
    """The oldest observed release whose FP8 context manager is `name` ("autocast" or "fp8_autocast")."""
    return next((r for r in releases() if data()["te_releases"][r]["autocast"] == name), None)


def first_release_with_recipe(cls: str) -> str | None:
    return next((r for r in releases() if cls in data()["te_releases"][r]["recipes"]), None)


def _holds(atom: dict[str, Any], values: dict[str, Any]) -> bool:
    have = values.get(atom["var"])
    if have is None:  # not known without TE (CUDA, cuBLASLt): taken as new enough, i.e. +infinity
        return atom["op"] in (">=", ">")
    want = tuple(atom["value"]) if atom["var"] == "cc" else atom["value"]
    have = tuple(have) if atom["var"] == "cc" else have
    return {">=": have >= want, ">": have > want, "<": have < want, "<=": have <= want}[atom["op"]]


def support(te_release: str, family: str, cc: tuple[int, int], cuda: float | None = None,
            cublaslt: int | None = None) -> tuple[bool, str] | None:
    """TE's own answer for a recipe family on compute capability `cc`, reason verbatim; None if TE has no check."""
    rules = data()["te_releases"][te_release]["support"].get(family)
    if rules is None:
        return None
    values = {"cc": tuple(cc), "cuda": cuda, "cublaslt": cublaslt}
    for rule in rules["rules"]:
        if all(_holds(a, values) for a in rule["when"]):
            return rule["ok"], rule["reason"]
    raise ValueError(f"TE {te_release} {family}: no rule matched {values}")


def accelerate_releases() -> list[str]:
    return list(data()["accelerate_releases"])


def accelerate_te(accelerate: str | None, te: str | None) -> dict[str, Any] | None:
    """The observed problems of an Accelerate x TE pair (mapped to the nearest observed releases), or None."""
    a, t = _nearest(accelerate, accelerate_releases()), release_for(te)
    if a is None or t is None:
        return None
    entry = data()["accelerate_te"].get(a, {}).get(t)
    return {"accelerate": a, "te": t, **entry} if entry else {"accelerate": a, "te": t, "problems": [], "fixes": {}}
