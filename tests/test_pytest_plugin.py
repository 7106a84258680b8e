"""The installed pytest plugin: markers, skip reasons from the doctor's capability checks, the fp8_cell fixture."""

from __future__ import annotations

import subprocess
import sys

from fp8doctor import pytest_plugin

MARKED = """
import pytest
from fp8doctor.pytest_plugin import requires

@pytest.mark.gpu
def test_gpu(): pass

@pytest.mark.te
def test_te(): pass

@pytest.mark.multigpu
def test_multi(): pass

@pytest.mark.slow
def test_slow(): pass

@pytest.mark.gpu(min_cc="nine")
def test_bad_marker(): pass

@requires(gpu=True, te=True, min_cc=(8, 9), min_gpus=2)
def test_requires_all(): pass

@requires(torchao=True)
def test_requires_torchao(): pass

def test_plain(): pass
"""

H100 = {"gpus": [{"index": "0", "name": "H100", "cc": (9, 0)}, {"index": "3", "name": "H100", "cc": (9, 0)}],
        "gpu_count": 2, "cc": (9, 0), "te_import_error": None,
        "installed": {"torchao": "0.18.0", "transformer-engine": "2.9.0"}}


def _skips(result) -> dict[str, str]:
    _, skipped, _ = result.listoutcomes()
    return {rep.nodeid.split("::")[-1]: rep.longrepr[2] for rep in skipped}


def test_markers_and_cpu_skip_reasons(pytester) -> None:
    pytester.makepyfile(test_marked=MARKED)
    result = pytester.inline_run("--strict-markers", "-p", "no:cacheprovider")
    passed, skipped, failed = result.listoutcomes()
    assert not failed
    assert sorted(r.nodeid.split("::")[-1] for r in passed) == [
        "test_plain", "test_requires_torchao", "test_slow"]
    skips = _skips(result)
    assert "No CUDA GPU is visible" in skips["test_gpu"]
    assert "Transformer Engine is not installed" in skips["test_te"]
    assert "No CUDA GPU is visible" in skips["test_multi"]
    everything = skips["test_requires_all"]
    for need in ("No CUDA GPU is visible", "2 CUDA GPUs needed, none visible.", "Transformer Engine is not installed"):
        assert need in everything
    assert everything.count("fp8doctor:") == 1
    assert "fp8doctor: bad marker arguments" in skips["test_bad_marker"]


def test_dash_m_gpu_exits_zero_with_skips_on_cpu(pytester) -> None:
    pytester.makepyfile(test_marked=MARKED)
    result = pytester.runpytest("-m", "gpu", "-rs", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*SKIPPED*No CUDA GPU is visible*", "*2 skipped, 6 deselected*"])
    # Green with nothing run says so.
    result.stdout.fnmatch_lines(["fp8doctor GPU suite: 0 of 2 ran; 2 skipped, e.g. *No CUDA GPU is visible*"])


def test_gpu_required_turns_no_gpu_into_a_failure(pytester) -> None:
    pytester.makepyfile(test_marked=MARKED)
    result = pytester.runpytest("-m", "gpu", "--gpu-required", "-p", "no:cacheprovider")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["fp8doctor GPU suite: 0 of 2 ran*(--gpu-required: this is a failure)"])
    plain = pytester.runpytest("-m", "not gpu", "--gpu-required", "-p", "no:cacheprovider")
    assert plain.ret == 0 and "fp8doctor GPU suite" not in plain.stdout.str()  # no GPU test selected


def test_suite_line_counts_on_dicts() -> None:
    from fp8doctor.pytest_plugin import suite_line

    assert suite_line({}) is None
    assert suite_line({"a": {"skipped": None}, "b": {"skipped": None}}) == "fp8doctor GPU suite: 2 of 2 ran"
    assert suite_line({"a": {"skipped": None}, "b": {"skipped": "No TE."}}) == (
        "fp8doctor GPU suite: 1 of 2 ran; 1 skipped, e.g. No TE.")


def test_reasons_on_hand_written_gpu_facts(monkeypatch) -> None:
    monkeypatch.setattr(pytest_plugin.gpus, "facts", lambda: H100)
    assert pytest_plugin.missing(gpu=True, te=True, min_cc=(8, 9), min_gpus=2) == []
    assert pytest_plugin.missing(min_cc=(10, 0)) == ["Compute capability 10.0 or higher needed; this GPU has 9.0."]
    assert pytest_plugin.missing(min_gpus=4) == ["4 CUDA GPUs needed, 2 visible."]
    old = dict(H100, cc=(8, 0), installed={"torchao": None, "transformer-engine": "2.9.0"},
               te_import_error="libcudnn.so.9: cannot open shared object file")
    monkeypatch.setattr(pytest_plugin.gpus, "facts", lambda: old)
    lacks = pytest_plugin.missing(te=True, torchao=True)
    assert any("fails to import: libcudnn.so.9" in x for x in lacks)
    assert any("compute capability 8.0" in x and "8.9" in x for x in lacks)
    assert any("torchao is not installed" in x for x in lacks)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert pytest_plugin.worker_gpu() == "3"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    assert pytest_plugin.worker_gpu() == "0"


def test_a_broken_probe_skips_instead_of_crashing_the_session(pytester) -> None:
    pytester.makeconftest(
        "import fp8doctor.pytest_plugin.gpus as p\n"
        "def boom():\n    raise OSError('nvidia-smi hung')\n"
        "p.facts = boom\n"
    )
    pytester.makepyfile(test_marked=MARKED)
    result = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*could not read this machine's capabilities (OSError: nvidia-smi hung)*"])


def test_plugin_import_is_light() -> None:
    code = "import sys, fp8doctor.pytest_plugin; print(sorted(m for m in ('torch', 'accelerate', 'transformers') " \
           "if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fp8_cell_fixture_runs_a_real_cell_in_a_child_process(pytester) -> None:
    pytester.makepyfile(test_cell="""
import os

def test_cell(fp8_cell):
    result = fp8_cell(backend="torchao", recipe="tensorwise", entry="accelerator", steps=2)
    assert result["outcome"] == "finished", result.get("error")
    assert result["fp8_active"] and len(result["fp8_layers"]) == 13
    assert result["emulated"] is True and result["pid"] != os.getpid()
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()[-2000:]
    result.assert_outcomes(passed=1)


def test_each_xdist_worker_gets_its_own_gpu_from_fake_device_lists() -> None:
    four = ["0", "1", "2", "3"]
    assert [pytest_plugin.assign_gpu(f"gw{k}", four) for k in range(6)] == ["0", "1", "2", "3", "0", "1"]
    assert pytest_plugin.assign_gpu(None, four) is None  # not under xdist: the test sees every GPU
    assert pytest_plugin.assign_gpu("master", four) is None
    assert pytest_plugin.assign_gpu("gw0", []) is None
    gpus = H100["gpus"]  # nvidia-smi indices 0 and 3
    assert pytest_plugin.visible_devices({}, gpus) == ["0", "3"]
    assert [pytest_plugin.assign_gpu(w, pytest_plugin.visible_devices({}, gpus)) for w in ("gw0", "gw1")] == [
        "0", "3"]
    uuids = {"CUDA_VISIBLE_DEVICES": "GPU-aaa, GPU-bbb"}  # the user's own list is kept as written
    assert pytest_plugin.visible_devices(uuids, gpus) == ["GPU-aaa", "GPU-bbb"]
    assert pytest_plugin.assign_gpu("gw1", pytest_plugin.visible_devices(uuids, gpus)) == "GPU-bbb"
    assert pytest_plugin.gpu_label(["3"], gpus) == "GPU 3 (H100)"
    assert pytest_plugin.gpu_label(["0", "3"], gpus) == "GPUs 0,3"


FAKE_GPUS_CONFTEST = """
import fp8doctor.pytest_plugin.gpus as p

FAKE = {"gpus": [{"index": "0", "name": "FakeGPU", "cc": (9, 0)}, {"index": "1", "name": "FakeGPU", "cc": (9, 0)}],
        "gpu_count": 2, "cc": (9, 0), "gpu_status": "2 fake GPUs", "te_import_error": None,
        "installed": {"torchao": "0.18.0", "transformer-engine": None}}
p.facts = lambda: FAKE
"""

PINNED_TESTS = """
import os
import pytest

@pytest.mark.gpu
@pytest.mark.parametrize("k", range(4))
def test_pinned(k):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == {"gw0": "0", "gw1": "1"}[worker]
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
"""


def test_pytest_dash_n_pins_workers_and_names_the_gpu_per_test(pytester) -> None:
    pytester.makeconftest(FAKE_GPUS_CONFTEST)  # the facts are faked; the pinning and reporting are real
    pytester.makepyfile(test_pinned=PINNED_TESTS)
    result = pytester.runpytest_subprocess("-m", "gpu", "-n", "2", "-v", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert out.count("PASSED [GPU 0 (FakeGPU)]") + out.count("PASSED [GPU 1 (FakeGPU)]") == 4
    result.stdout.fnmatch_lines(["fp8doctor: GPU tests ran on GPU *"])
