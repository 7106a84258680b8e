"""Behaviour generations from version strings, and the fix lines they imply."""

from __future__ import annotations

import pytest
from env_facts_helpers import LF_REFERENCE, cfg, make_facts

from fp8doctor.knowledge.fixes import fix_lines
from fp8doctor.knowledge.generations import (
    ERROR_NEW,
    ERROR_OLD,
    accelerate_generation,
    accelerate_min,
    intended_backend,
    transformers_generation,
)
from fp8doctor.knowledge.releases import observed


def test_each_observed_accelerate_release_in_one_generation() -> None:
    """Generations are runs of observed releases that the engine answers alike: every observed release has one, the
    last run is open-ended (a newer release is predicted as the newest), and the labels follow the lab."""
    labels = {v: accelerate_generation(v)["generation"] for v in observed()["accelerate"]}
    assert labels["1.1.1"] == labels["1.3.0"] and labels["1.4.0"] != labels["1.3.0"]
    assert labels[observed()["accelerate"][-1]].startswith(">=")
    assert accelerate_generation("9.0.0")["generation"] == labels[observed()["accelerate"][-1]]
    assert accelerate_min() == "1.9"  # the first observed release where env-only fp8 trains in FP8


@pytest.mark.parametrize(
    ("version", "message", "env_fp8_works", "reads_backend"),
    [("1.1.1", ERROR_OLD, False, False), ("1.4.0", ERROR_NEW, False, False), ("1.5.2", ERROR_NEW, False, False),
     ("1.7.0", ERROR_NEW, False, False), ("1.8.1", ERROR_NEW, False, False), ("1.9.0", ERROR_NEW, True, True),
     ("1.15.0", ERROR_NEW, True, True), ("1.10.0rc1", ERROR_NEW, True, True)],
)
def test_accelerate_generation(version: str, message: str, env_fp8_works: bool, reads_backend: bool) -> None:
    gen = accelerate_generation(version)
    assert (gen["error_message"], gen["env_fp8_works"], gen["reads_fp8_backend_env"]) == (
        message, env_fp8_works, reads_backend)
    assert ("TERecipeKwargs" in gen["recipe_classes"]) == (message == ERROR_NEW)
    assert gen["mxfp8_block_scaling_option"] == (tuple(int(x) for x in version.split(".")[:2]) >= (1, 11))
    assert ("ACCELERATE_MIXED_PRECISION=fp8 alone trains in FP8" in gen["summary"]) == env_fp8_works


def test_unknown_and_absent_versions() -> None:
    assert accelerate_generation(None)["generation"] == "absent"
    assert accelerate_generation("0.34.0")["generation"] == "older than any observed release"
    assert accelerate_generation("not-a-version")["generation"] == "unknown"
    assert transformers_generation(None)["installed"] is False


def test_transformers_generation() -> None:
    four, five0, five3 = (transformers_generation(v) for v in ("4.45.0", "5.2.0", "5.24.0"))
    assert four["writes_env"] and not four["passes_mixed_precision"] and not four["always_passes_kwargs_handlers"]
    assert five0["passes_mixed_precision"] and not five0["always_passes_kwargs_handlers"] and not five0["writes_env"]
    assert five3["passes_mixed_precision"] and five3["always_passes_kwargs_handlers"] and not five3["writes_env"]
    assert (four["generation"], five0["generation"], five3["generation"]) == ("4.45-4.57", "5.0-5.2", ">=5.3")


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
