"""Is the reference bug the user's problem? The repro always shows what these library versions do with the
buggy patch; it counts against the user's setup only where their own stack contains that path: an installed
trainer framework patches `Accelerator.__init__`, or their watched command raised Accelerate's FP8 ValueError.
Pure: reads the env part's facts and the watch part's result, both plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fp8doctor.knowledge.predict import ERROR_NEW, ERROR_OLD
from fp8doctor.verdicts import RAISED


@dataclass
class Exposure:
    exposed: bool
    how: list[str] = field(default_factory=list)  # each way it was looked for, and what was seen

    def sentence(self) -> str:
        head = ("Your stack contains the buggy path" if self.exposed
                else "Your stack does not contain the buggy path, as far as fp8doctor can see")
        return f"{head}: " + "; ".join(self.how) + "."


def _read_frameworks(patches: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(patch sites found, what was read) from facts['accelerator_patches']."""
    sites, read, absent = [], [], []
    for name, info in patches.items():
        if not info:
            absent.append(name)
            continue
        read.append(f"{name} {info.get('version') or ''}".strip() + f" ({info.get('files_read', 0)} files)")
        sites += [f"{name} {info.get('version') or ''}".strip() + f" assigns `Accelerator.__init__` at {where}"
                  for where in info.get("patches") or []]
    how = []
    if read:
        how.append("no `Accelerator.__init__` patch in the installed " + ", ".join(read))
    if absent:
        how.append(", ".join(absent) + " not installed")
    return sites, how


def judge(facts: dict[str, Any] | None, watch: dict[str, Any] | None, config_files: list[str]) -> Exposure:
    """Whether the user's stack reaches the reference bug, and how that was decided."""
    sites, read = _read_frameworks((facts or {}).get("accelerator_patches") or {})
    hit = []
    if watch is not None:
        err = watch.get("error") or {}
        if watch.get("verdict") == RAISED and err.get("message") in (ERROR_OLD, ERROR_NEW):
            hit.append(f"your watched command raised {err.get('type', 'ValueError')} \"{err.get('message')}\"")
    if sites or hit:
        return Exposure(True, sites + hit)
    how = read if facts is not None else ["the environment part did not run, so no framework was read"]
    if watch is not None:
        how.append(f"your watched command did not raise it ({watch.get('verdict')})")
    if config_files:
        how.append("your --config runs are judged on their own rows")
    if watch is None and not config_files:
        how.append("`--config FILE` or `--watch -- CMD` checks your own config or command")
    return Exposure(False, how)
