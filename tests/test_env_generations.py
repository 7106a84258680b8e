"""Behaviour generations from version strings, and the fix lines they imply."""

from __future__ import annotations

import pytest
from env_facts_helpers import LF_REFERENCE, cfg, make_facts

from fp8doctor.knowledge.generations import (
    ERROR_NEW,
    ERROR_OLD,
    accelerate_generation,
    fix_lines,
    intended_backend,
    transformers_generation,
)


@pytest.mark.parametrize(
    ("version", "generation", "message", "env_fp8_works"),
    [("1.1.1", "<=1.3", ERROR_OLD, False), ("1.4.0", "1.4", ERROR_NEW, False), ("1.5.2", "1.5-1.7", ERROR_NEW, False),
     ("1.7.0", "1.5-1.7", ERROR_NEW, False), ("1.8.1", "1.8", ERROR_NEW, False), ("1.9.0", ">=1.9", ERROR_NEW, True),
     ("1.15.0", ">=1.9", ERROR_NEW, True), ("1.10.0rc1", ">=1.9", ERROR_NEW, True)],
)
def test_accelerate_generation(version: str, generation: str, message: str, env_fp8_works: bool) -> None:
    gen = accelerate_generation(version)
    assert (gen["generation"], gen["error_message"], gen["env_fp8_works"]) == (generation, message, env_fp8_works)
    assert ("TERecipeKwargs" in gen["recipe_classes"]) == (generation != "<=1.3")
    assert gen["reads_fp8_backend_env"] == (generation == ">=1.9")
    assert gen["mxfp8_block_scaling_option"] == (tuple(int(x) for x in version.split(".")[:2]) >= (1, 11))


def test_unknown_and_absent_versions() -> None:
    assert accelerate_generation(None)["generation"] == "absent"
    assert accelerate_generation("not-a-version")["generation"] == "unknown"
    assert transformers_generation(None)["installed"] is False


def test_transformers_generation() -> None:
    four, five0, five3 = (transformers_generation(v) for v in ("4.45.0", "5.2.0", "5.24.0"))
    assert four["writes_env"] and not four["passes_mixed_precision"] and not four["always_passes_kwargs_handlers"]
    assert five0["passes_mixed_precision"] and not five0["always_passes_kwargs_handlers"] and not five0["writes_env"]
    assert five3["passes_mixed_precision"] and five3["always_passes_kwargs_handlers"] and not five3["writes_env"]
    assert (four["generation"], five0["generation"], five3["generation"]) == ("4.x", "5.0-5.2", ">=5.3")


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
    assert "pip install 'accelerate>=1.9'" in lines
    assert any(line.startswith("llamafactory-cli train ") for line in lines)
    assert not any("accelerate launch" in line for line in lines)  # an Accelerate YAML never applies to LF
    ao = make_facts(env={"ACCELERATE_FP8_BACKEND": "AO"}, packages={"accelerate": "1.6.0"})
    lines = fix_lines(ao)
    assert "  backend: AO" in lines and "distributed_type: 'NO'" in lines
    assert "accelerate launch --config_file accelerate_fp8.yaml train.py" in lines
    assert intended_backend(make_facts()) == "AO"  # only torchao installed
    assert intended_backend(make_facts(packages={"torchao": None})) == "TE"
