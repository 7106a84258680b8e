"""GPU and backend rules on hand-made facts."""

from __future__ import annotations

from env_facts_helpers import LF_REFERENCE, by_id, cfg, make_facts

from fp8doctor.findings import Level
from fp8doctor.rules import backends, evaluate, gpu


def test_no_gpu_is_unknown_not_unsupported() -> None:
    """Nothing visible to ask (a login node, CUDA_VISIBLE_DEVICES=""): FP8 support is unknown, a warning."""
    no_intent = gpu.check_gpu(make_facts(gpus=[]))
    assert no_intent.level is Level.WARN and "No CUDA GPU" in no_intent.title and no_intent.fix
    intended = gpu.check_gpu(make_facts(gpus=[], env={"ACCELERATE_MIXED_PRECISION": "fp8"}))
    assert intended.level is Level.WARN and "unknown" in intended.title
    assert "ACCELERATE_MIXED_PRECISION=fp8" in intended.detail
    facts = make_facts(gpus=[])
    assert {s["supported"] for s in facts["gpu"]["fp8_support"].values()} == {None}
    assert gpu.check_fp8_families(facts).title == "FP8 recipe families: unknown, no CUDA GPU visible"


def test_gpu_below_89_and_capable_gpu() -> None:
    a100 = {"index": "0", "name": "NVIDIA A100", "cc": [8, 0], "memory_mib": 40960, "driver": "550"}
    f = gpu.check_gpu(make_facts(gpus=[a100], env={"ACCELERATE_MIXED_PRECISION": "fp8"}))
    assert f.level is Level.FAIL and "8.0" in f.title and "fp16" in f.detail
    assert gpu.check_gpu(make_facts(gpus=[a100])).level is Level.WARN
    assert gpu.check_gpu(make_facts()).level is Level.OK


def test_fp8_families_per_compute_capability() -> None:
    h100 = gpu.check_fp8_families(make_facts())
    assert h100.level is Level.OK and "per-tensor" in h100.title and "block" in h100.title
    assert "mxfp8" not in h100.title and "mxfp8: no" in h100.detail
    b200 = {"index": "0", "name": "NVIDIA B200", "cc": [10, 0], "memory_mib": 1, "driver": "570"}
    assert "nvfp4" in gpu.check_fp8_families(make_facts(gpus=[b200])).title
    assert gpu.check_fp8_families(make_facts(gpus=[])).level is Level.SKIP


def test_no_backend_installed() -> None:
    facts = make_facts(packages={"torchao": None})
    assert backends.check_any_backend(facts).level is Level.WARN
    facts = make_facts(packages={"torchao": None}, configs=[cfg("llamafactory", LF_REFERENCE)])
    f = backends.check_any_backend(facts)
    assert f.level is Level.FAIL and "pip install torchao" in f.fix
    assert backends.check_any_backend(make_facts()).level is Level.OK


def test_te_absent_is_skip_unless_requested() -> None:
    assert backends.check_transformer_engine(make_facts()).level is Level.SKIP
    f = backends.check_transformer_engine(make_facts(configs=[cfg("llamafactory", LF_REFERENCE)]))
    assert f.level is Level.FAIL and f.id == "backend.te-missing" and "fp8_backend te" in f.title


def test_te_installed_but_extension_does_not_import() -> None:
    facts = make_facts(
        packages={"transformer-engine": "2.9.0", "transformer-engine-cu12": "2.9.0",
                  "transformer-engine-torch": "2.9.0"},
        te_import={"attempted": True, "ok": False, "error": "ImportError: libtransformer_engine.so: undefined symbol"},
    )
    f = backends.check_transformer_engine(facts)
    assert f.level is Level.FAIL and "undefined symbol" in f.detail
    ok = make_facts(packages={"transformer-engine": "2.9.0"},
                    te_import={"attempted": True, "ok": True, "error": None, "version": "2.9.0",
                               "fp8_available": True, "fp8_reason": None, "autocast": "autocast"})
    assert backends.check_transformer_engine(ok).level is Level.OK
    no_fp8 = make_facts(packages={"transformer-engine": "2.9.0"},
                        te_import={"attempted": True, "ok": True, "error": None, "fp8_available": False,
                                   "fp8_reason": "Device compute capability 8.9 or higher required for FP8 execution."})
    f = backends.check_transformer_engine(no_fp8)
    assert f.level is Level.WARN and "8.9 or higher required" in f.detail


def test_torchao_requested_but_missing() -> None:
    facts = make_facts(packages={"torchao": None}, env={"ACCELERATE_FP8_BACKEND": "AO"})
    assert backends.check_torchao(facts).level is Level.FAIL


def test_evaluate_never_raises_on_empty_facts() -> None:
    findings = evaluate({})
    crashed = by_id(findings, "check-crashed")
    assert crashed and {f.level for f in crashed} == {Level.ERROR}
    assert "check_gpu" in {f.id.split(".", 1)[1] for f in crashed}
