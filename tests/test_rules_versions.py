"""Version rules: TE parts vs each other and torch, Accelerate vs TE options, Accelerate generations."""

from __future__ import annotations

from env_facts_helpers import acc_cfg, make_facts

from fp8doctor.findings import Level
from fp8doctor.rules import versions

TE_OK = {"transformer-engine": "2.9.0", "transformer-engine-cu12": "2.9.0", "transformer-engine-torch": "2.9.0"}


def test_te_parts_consistent_and_mismatched() -> None:
    assert versions.check_te_packages(make_facts()) is None
    assert versions.check_te_packages(make_facts(packages=TE_OK)).level is Level.OK
    f = versions.check_te_packages(make_facts(packages={**TE_OK, "transformer-engine-torch": "2.8.0"}))
    assert f.level is Level.FAIL and "different versions" in f.detail


def test_te_with_cpu_torch_or_other_cuda_major() -> None:
    f = versions.check_te_packages(make_facts(packages=TE_OK, torch_cuda=None))
    assert f.level is Level.FAIL and "CPU-only" in f.detail
    f = versions.check_te_packages(make_facts(packages=TE_OK, torch_cuda="13.0"))
    assert f.level is Level.FAIL and "CUDA 13.0" in f.detail


def test_removed_te_recipe_options() -> None:
    env = {"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_INTERVAL": "2"}
    f = versions.check_accelerate_te_options(make_facts(packages=TE_OK, env=env))
    assert f.level is Level.FAIL and "interval" in f.detail and "TypeError" in f.detail
    old = dict.fromkeys(TE_OK, "2.1.0")
    assert versions.check_accelerate_te_options(make_facts(packages=old, env=env)) is None
    # Accelerate drops values equal to its default, so interval=1 never reaches TE.
    assert versions.check_accelerate_te_options(
        make_facts(packages=TE_OK, env={"ACCELERATE_FP8_INTERVAL": "1"})) is None
    conf = acc_cfg({"mixed_precision": "fp8", "fp8_config": {"backend": "TE",
                                                            "override_linear_precision": [False, False, True]}})
    f = versions.check_accelerate_te_options(make_facts(packages=TE_OK, accelerate_config=conf))
    assert f.level is Level.FAIL and "override_linear_precision" in f.detail


def test_accelerate_generations_as_findings() -> None:
    env = {"ACCELERATE_MIXED_PRECISION": "fp8"}
    assert versions.check_accelerate_version(make_facts()) is None
    f = versions.check_accelerate_version(make_facts(packages={"accelerate": "1.1.1"}, env=env))
    assert f.level is Level.FAIL and "no torchao backend" in f.title
    for old in ("1.4.0", "1.6.0", "1.8.1"):
        f = versions.check_accelerate_version(make_facts(packages={"accelerate": old}, env=env))
        assert f.level is Level.WARN and f.fix == "pip install 'accelerate>=1.9'"
    assert versions.check_accelerate_version(make_facts(env=env)).level is Level.OK
    f = versions.check_accelerate_version(make_facts(packages={"accelerate": "1.10.0"},
                                                     env={**env, "ACCELERATE_FP8_USE_MXFP8_BLOCK_SCALING": "1"}))
    assert f.level is Level.WARN and "1.11" in f.detail
    assert versions.check_accelerate_version(make_facts(packages={"accelerate": None}, env=env)).level is Level.FAIL
