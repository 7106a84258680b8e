"""Behaviour generations from version strings, and the fix lines they imply."""

from __future__ import annotations

import pytest
from env_facts_helpers import LF_REFERENCE, cfg, make_facts

from fp8doctor.generations import (
    ERROR_NEW,
    ERROR_OLD,
    accelerate_generation,
    fix_lines,
    intended_backend,
    transformers_generation,
)


@pytest.mark.parametrize(
    ("version", "generation", "check", "message"),
    [("1.1.1", "<=1.3", "argument", ERROR_OLD), ("1.4.0", "1.4-1.8", "argument", ERROR_NEW),
     ("1.8.1", "1.4-1.8", "argument", ERROR_NEW), ("1.9.0", ">=1.9", "argument-or-state", ERROR_NEW),
     ("1.15.0", ">=1.9", "argument-or-state", ERROR_NEW), ("1.10.0rc1", ">=1.9", "argument-or-state", ERROR_NEW)],
)
def test_accelerate_generation(version: str, generation: str, check: str, message: str) -> None:
    gen = accelerate_generation(version)
    assert (gen["generation"], gen["check"], gen["error_message"]) == (generation, check, message)
    assert ("TERecipeKwargs" in gen["recipe_classes"]) == (generation != "<=1.3")
    assert gen["mxfp8_block_scaling_option"] == (tuple(int(x) for x in version.split(".")[:2]) >= (1, 11))


def test_unknown_and_absent_versions() -> None:
    assert accelerate_generation(None)["generation"] == "absent"
    assert accelerate_generation("not-a-version")["generation"] == "unknown"
    assert transformers_generation(None)["installed"] is False


def test_transformers_generation() -> None:
    four, five = transformers_generation("4.45.0"), transformers_generation("5.24.0")
    assert four["writes_env"] and not four["passes_mixed_precision"]
    assert five["passes_mixed_precision"] and five["always_passes_kwargs_handlers"] and not five["writes_env"]


def test_installed_accelerate_has_what_the_table_says() -> None:
    """The table's recipe classes for the installed accelerate really exist there."""
    from importlib.metadata import version

    utils = pytest.importorskip("accelerate.utils")
    gen = accelerate_generation(version("accelerate"))
    for name in gen["recipe_classes"]:
        assert hasattr(utils, name.split()[0]), name


def test_fix_lines_follow_versions_and_backend() -> None:
    facts = make_facts(configs=[cfg("llamafactory", LF_REFERENCE)], packages={"transformers": "4.45.0",
                                                                              "accelerate": "1.1.1"})
    lines = fix_lines(facts)
    assert lines[0].startswith("pip install 'accelerate>=1.9'")
    assert "  backend: TE" in lines and "mixed_precision: fp8" in lines
    assert any(line.startswith("bf16: false") and "4.x rewrites" in line for line in lines)
    ao = make_facts(env={"ACCELERATE_FP8_BACKEND": "AO"}, packages={"accelerate": "1.6.0"})
    lines = fix_lines(ao)
    assert "  backend: AO" in lines and any("1.4-1.8" in line for line in lines)
    assert intended_backend(make_facts()) == "AO"  # only torchao installed
    assert intended_backend(make_facts(packages={"torchao": None})) == "TE"
