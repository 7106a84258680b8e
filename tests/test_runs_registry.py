"""The entry-path registry: every RunSpec entry name is served by exactly one module that declares it."""

from __future__ import annotations

from fp8doctor.runs.entries import entry_module, registry
from fp8doctor.runs.spec import BUGGY_ENTRIES, ENTRIES


def test_every_entry_name_has_one_declaring_module() -> None:
    assert sorted(registry()) == sorted(ENTRIES + BUGGY_ENTRIES)
    for name in ENTRIES + BUGGY_ENTRIES:
        module = entry_module(name)
        assert name in module.NAMES and isinstance(module.LAUNCHES_PROCESSES, bool) and callable(module.run)
    assert entry_module("launch").LAUNCHES_PROCESSES and not entry_module("native").LAUNCHES_PROCESSES
