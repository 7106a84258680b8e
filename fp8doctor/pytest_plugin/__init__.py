"""pytest plugin (installed with fp8doctor): FP8 markers whose skip reasons come from the doctor's checks.

Loaded in every pytest session on a machine where fp8doctor is installed, so it imports only pytest and the
stdlib at load time, reads the machine (nvidia-smi, importlib.metadata; no torch import) only when a marked
test or `requires(...)` asks, caches what it read, and turns any failure of its own into a skip reason
instead of an error in someone else's test session. A project that does not want it: `pytest -p no:fp8doctor`.
The hooks and the fixture live here; requirements.py owns the skip reasons, gpus.py the GPU facts.

  import pytest
  from fp8doctor.pytest_plugin import requires

  @requires(gpu=True, te=True, min_cc=(8, 9))
  def test_te_linear(): ...

  @pytest.mark.gpu            # skipped with the doctor's reason when no usable GPU is visible
  def test_on_gpu(fp8_cell):  # fp8_cell runs one RunSpec in a child process, pinned to this xdist worker's GPU
      result = fp8_cell(backend="torchao", recipe="tensorwise", entry="accelerator")
      assert result["fp8_active"]
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from fp8doctor.pytest_plugin import gpus
from fp8doctor.pytest_plugin.gpus import ALL_DEVICES_ENV, assign_gpu, gpu_label, visible_devices, worker_gpu
from fp8doctor.pytest_plugin.requirements import MARKERS, missing, needs, reason_for, requires

__all__ = ["assign_gpu", "gpu_label", "missing", "requires", "suite_line", "visible_devices", "worker_gpu"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("fp8doctor").addoption(
        "--gpu-required", action="store_true", default=False,
        help="fail the session when gpu-marked tests were selected but no CUDA GPU is visible (a GPU CI runner "
             "that lost its GPU would otherwise pass with every GPU test skipped)")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip gpu/te/multigpu-marked tests this machine cannot run, with the doctor's reason."""
    cache: dict[tuple[Any, ...], str] = {}
    for item in items:
        try:
            need = needs(item)
        except (TypeError, ValueError) as exc:  # e.g. gpu(min_cc="9.0"): say so rather than break collection
            item.add_marker(pytest.mark.skip(reason=f"fp8doctor: bad marker arguments ({exc})"))
            continue
        if need is None:
            continue
        key = tuple(sorted(need.items()))
        if key not in cache:
            cache[key] = reason_for(**need)
        if cache[key]:
            item.add_marker(pytest.mark.skip(reason=cache[key]))


GPU_PROPERTY = "fp8doctor_gpu"  # user property on each GPU test's report: the GPU it ran on
_GPU_TESTS: dict[str, list[str]] = {}  # GPU label -> node ids of the GPU tests that ran on it (for the summary)


def _runs_on_gpu(item: pytest.Item) -> bool:
    return item.get_closest_marker("gpu") is not None and item.get_closest_marker("skip") is None


def pytest_collection_finish(session: pytest.Session) -> None:
    """An xdist worker that will run GPU tests is pinned to its own GPU (CUDA_VISIBLE_DEVICES) before any of
    them runs, so `pytest -m gpu -n N` spreads the tests over N GPUs, in-process CUDA and child processes alike."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or ALL_DEVICES_ENV in os.environ or not any(_runs_on_gpu(i) for i in session.items):
        return
    try:
        devices = visible_devices(os.environ, gpus.facts().get("gpus") or [])
    except Exception:  # noqa: BLE001 - the skip reasons already say what could not be read
        return
    gpu = assign_gpu(worker, devices)
    if gpu is None:
        return
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # nvidia-smi's indices are PCI bus order
    os.environ[ALL_DEVICES_ENV] = ",".join(devices)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _runs_on_gpu(item):
        return
    try:
        seen = gpus.facts().get("gpus") or []
        label = gpu_label(visible_devices(os.environ, seen), seen)
    except Exception:  # noqa: BLE001
        return
    item.user_properties.append((GPU_PROPERTY, label))


def _gpu_of(report: pytest.TestReport) -> str | None:
    for entry in getattr(report, "user_properties", None) or []:
        if len(entry) == 2 and entry[0] == GPU_PROPERTY:
            return str(entry[1])
    return None


@pytest.hookimpl(wrapper=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    """`-v` status words name the GPU: "PASSED [GPU 1 (NVIDIA H200)]"."""
    status = yield
    gpu = _gpu_of(report) if report.when == "call" else None
    if not gpu or not isinstance(status, tuple) or len(status) != 3:
        return status
    category, letter, word = status
    if isinstance(word, tuple):
        return category, letter, (f"{word[0]} [{gpu}]", word[1])
    return category, letter, f"{word} [{gpu}]" if word else word


_SUITE: dict[str, dict[str, str | None]] = {}  # gpu-marked node id -> None when it ran, else why it did not


def pytest_sessionstart(session: pytest.Session) -> None:
    _SUITE.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    gpu = _gpu_of(report) if report.when == "call" else None
    if gpu:
        _GPU_TESTS.setdefault(gpu, []).append(report.nodeid)
    if "gpu" not in report.keywords:  # the controller under xdist sees the workers' reports too
        return
    if report.when == "setup" and report.skipped:
        longrepr = report.longrepr
        why = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        _SUITE[report.nodeid] = {"skipped": why.removeprefix("Skipped: ")}
    elif report.when == "call":
        _SUITE[report.nodeid] = {"skipped": None}


def suite_line(outcomes: dict[str, dict[str, str | None]]) -> str | None:
    """'fp8doctor GPU suite: K of N ran' (+ the commonest skip reason when some did not); None without GPU tests."""
    if not outcomes:
        return None
    ran = sum(1 for o in outcomes.values() if o["skipped"] is None)
    reasons = [str(o["skipped"]) for o in outcomes.values() if o["skipped"] is not None]
    line = f"fp8doctor GPU suite: {ran} of {len(outcomes)} ran"
    if reasons:
        common = max(dict.fromkeys(reasons), key=reasons.count)  # on a tie, the first seen
        line += f"; {len(reasons)} skipped, e.g. {common}"
    return line


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Which GPU ran how many GPU tests (under xdist: each worker's own), and how much of the GPU suite ran."""
    if _GPU_TESTS:
        per_gpu = "; ".join(f"{gpu}: {len(ids)} test{'s' if len(ids) != 1 else ''}"
                            for gpu, ids in sorted(_GPU_TESTS.items()))
        terminalreporter.write_line(f"fp8doctor: GPU tests ran on {per_gpu}")
    line = suite_line(_SUITE)
    if line:
        red = terminalreporter.config.getoption("gpu_required", False) and gpus.no_gpu()
        terminalreporter.write_line(line + (" (--gpu-required: this is a failure)" if red else ""), red=red,
                                    yellow=not red and "skipped" in line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if (session.config.getoption("gpu_required", False) and _SUITE and gpus.no_gpu()
            and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def fp8_cell() -> Any:
    """Run one matrix cell in a child process: `fp8_cell(spec)` or `fp8_cell(backend=..., recipe=..., ...)`.

    Returns the result dict (schema in fp8doctor.runs.spec). Under pytest-xdist each worker is pinned to one
    GPU through CUDA_VISIBLE_DEVICES in the child's environment; a multi-process spec sees every GPU.
    """

    def run(spec: Any = None, **fields: Any) -> dict[str, Any]:
        from dataclasses import replace

        from fp8doctor.runs.pool import run_spec
        from fp8doctor.runs.spec import RunSpec

        if spec is None:
            spec = RunSpec(**fields)
        elif isinstance(spec, dict):
            spec = RunSpec.from_dict(spec)
        gpu = worker_gpu()
        if "CUDA_VISIBLE_DEVICES" not in spec.env:
            if spec.nproc > 1 and os.environ.get(ALL_DEVICES_ENV):  # a pinned worker: the spec needs every GPU
                spec = replace(spec, env={**spec.env, "CUDA_VISIBLE_DEVICES": os.environ[ALL_DEVICES_ENV]})
            elif gpu is not None and spec.nproc == 1:
                order = {} if "CUDA_VISIBLE_DEVICES" in os.environ else {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
                spec = replace(spec, env={**spec.env, "CUDA_VISIBLE_DEVICES": gpu, **order})
        return run_spec(spec)

    return run
