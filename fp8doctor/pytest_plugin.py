"""pytest plugin (installed with fp8doctor): FP8 markers whose skip reasons come from the doctor's checks.

Loaded in every pytest session on a machine where fp8doctor is installed, so it imports only pytest and the
stdlib at load time, reads the machine (nvidia-smi, importlib.metadata; no torch import) only when a marked
test or `requires(...)` asks, caches what it read, and turns any failure of its own into a skip reason
instead of an error in someone else's test session. A project that does not want it: `pytest -p no:fp8doctor`.

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

import functools
import os
import re
from collections.abc import Mapping
from typing import Any

import pytest

MARKERS = {
    "gpu": "needs a CUDA GPU; skipped with the doctor's reason when none is usable (kwarg min_cc=(8, 9))",
    "te": "needs Transformer Engine importable on a GPU of compute capability 8.9+",
    "multigpu": "needs two or more CUDA GPUs (kwarg min_gpus=N)",
    "slow": "takes more than a few seconds",
}


@functools.lru_cache(maxsize=1)
def _facts() -> dict[str, Any]:
    from fp8doctor.runs.machine import snapshot

    return snapshot()


def missing(gpu: bool = False, te: bool = False, min_cc: tuple[int, int] | None = None,
            min_gpus: int | None = None, torchao: bool = False) -> list[str]:
    """What this machine lacks for the requirements, one sentence each (empty: everything is there)."""
    from fp8doctor.knowledge.capability import backend_available, cc_str, fp8_family_supported

    facts = _facts()
    out: list[str] = []
    cc = facts.get("cc")
    count = int(facts.get("gpu_count") or 0)
    need_gpu = gpu or te or min_cc is not None or bool(min_gpus)
    if need_gpu and count == 0:
        why = str(facts.get("gpu_status") or "nvidia-smi lists none, or CUDA_VISIBLE_DEVICES hides them")
        out.append(f"No CUDA GPU is visible ({why.removeprefix('no CUDA device: ')}).")
    if min_gpus and 0 < count < min_gpus:
        out.append(f"{min_gpus} CUDA GPUs needed, {count} visible.")
    elif min_gpus and count == 0 and min_gpus > 1:
        out.append(f"{min_gpus} CUDA GPUs needed, none visible.")
    if min_cc is not None and cc is not None and tuple(cc) < tuple(min_cc):
        out.append(f"Compute capability {cc_str(tuple(min_cc))} or higher needed; this GPU has {cc_str(tuple(cc))}.")
    if te:
        ok, why = backend_available("te", facts["installed"], facts.get("te_import_error"))
        if not ok:
            out.append(why)
        if cc is not None:
            ok, why = fp8_family_supported(cc, "per-tensor")
            if not ok and not any(why == o for o in out):
                out.append(why)
    if torchao:
        ok, why = backend_available("torchao", facts["installed"])
        if not ok:
            out.append(why)
    return out


def _reason(**need: Any) -> str:
    try:
        lacks = missing(**need)
    except Exception as exc:  # noqa: BLE001 - a broken probe must not break the session: skip and say why
        return f"fp8doctor could not read this machine's capabilities ({type(exc).__name__}: {exc})"
    return ("fp8doctor: " + " ".join(lacks)) if lacks else ""


def requires(gpu: bool = False, te: bool = False, min_cc: tuple[int, int] | None = None,
             min_gpus: int | None = None, torchao: bool = False) -> pytest.MarkDecorator:
    """A `skipif` mark whose reason lists exactly what is missing (Lightning's RunIf style)."""
    reason = _reason(gpu=gpu, te=te, min_cc=min_cc, min_gpus=min_gpus, torchao=torchao)
    return pytest.mark.skipif(bool(reason), reason=reason or "all requirements met")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("fp8doctor").addoption(
        "--gpu-required", action="store_true", default=False,
        help="fail the session when gpu-marked tests were selected but no CUDA GPU is visible (a GPU CI runner "
             "that lost its GPU would otherwise pass with every GPU test skipped)")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def _needs(item: pytest.Item) -> dict[str, Any] | None:
    need: dict[str, Any] = {}
    gpu = item.get_closest_marker("gpu")
    if gpu is not None:
        need["gpu"] = True
        if "min_cc" in gpu.kwargs:
            cc = tuple(int(x) for x in gpu.kwargs["min_cc"])
            if len(cc) != 2:
                raise ValueError(f"min_cc must be (major, minor), got {gpu.kwargs['min_cc']!r}")
            need["min_cc"] = cc
    if item.get_closest_marker("te") is not None:
        need["te"] = True
    multi = item.get_closest_marker("multigpu")
    if multi is not None:
        need["min_gpus"] = int(multi.kwargs.get("min_gpus", 2))
    return need or None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip gpu/te/multigpu-marked tests this machine cannot run, with the doctor's reason."""
    cache: dict[tuple[Any, ...], str] = {}
    for item in items:
        try:
            need = _needs(item)
        except (TypeError, ValueError) as exc:  # e.g. gpu(min_cc="9.0"): say so rather than break collection
            item.add_marker(pytest.mark.skip(reason=f"fp8doctor: bad marker arguments ({exc})"))
            continue
        if need is None:
            continue
        key = tuple(sorted(need.items()))
        if key not in cache:
            cache[key] = _reason(**need)
        if cache[key]:
            item.add_marker(pytest.mark.skip(reason=cache[key]))


ALL_DEVICES_ENV = "FP8DOCTOR_ALL_CUDA_DEVICES"  # what CUDA_VISIBLE_DEVICES a worker saw before it was pinned
GPU_PROPERTY = "fp8doctor_gpu"  # user property on each GPU test's report: the GPU it ran on
_GPU_TESTS: dict[str, list[str]] = {}  # GPU label -> node ids of the GPU tests that ran on it (for the summary)


def visible_devices(environ: Mapping[str, str], gpus: list[dict[str, Any]]) -> list[str]:
    """The GPUs CUDA shows this process, as CUDA_VISIBLE_DEVICES entries: the user's own list when one is set
    (indices or UUIDs, kept as written), else the index of each GPU nvidia-smi lists."""
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip():
        return [x.strip() for x in cvd.split(",") if x.strip()]
    return [str(g["index"]) for g in gpus]


def assign_gpu(worker_id: str | None, devices: list[str]) -> str | None:
    """The one GPU an xdist worker gets: gw0 -> first device, gw1 -> second, ...; workers beyond the number of
    GPUs share them round-robin. None outside xdist (worker_id None) or without GPUs."""
    match = re.fullmatch(r"gw(\d+)", worker_id or "")
    if not devices or match is None:
        return None
    return devices[int(match.group(1)) % len(devices)]


def gpu_label(devices: list[str], gpus: list[dict[str, Any]]) -> str:
    """How a report names the GPU(s) a test ran on: "GPU 3 (NVIDIA H200)", or "GPUs 0,1" for several."""
    if len(devices) != 1:
        return f"GPUs {','.join(devices)}" if devices else "no GPU"
    names = {str(g.get("index")): g.get("name") for g in gpus}
    name = names.get(devices[0])
    return f"GPU {devices[0]}" + (f" ({name})" if name else "")


def worker_gpu() -> str | None:
    """The GPU an xdist worker should use (gw0 -> first visible GPU, gw1 -> second, ...; outside xdist the first);
    None without GPUs."""
    try:
        devices = visible_devices(os.environ, _facts().get("gpus") or [])
    except Exception:  # noqa: BLE001
        return None
    return assign_gpu(os.environ.get("PYTEST_XDIST_WORKER", "gw0"), devices)


def _runs_on_gpu(item: pytest.Item) -> bool:
    return item.get_closest_marker("gpu") is not None and item.get_closest_marker("skip") is None


def pytest_collection_finish(session: pytest.Session) -> None:
    """An xdist worker that will run GPU tests is pinned to its own GPU (CUDA_VISIBLE_DEVICES) before any of
    them runs, so `pytest -m gpu -n N` spreads the tests over N GPUs, in-process CUDA and child processes alike."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or ALL_DEVICES_ENV in os.environ or not any(_runs_on_gpu(i) for i in session.items):
        return
    try:
        devices = visible_devices(os.environ, _facts().get("gpus") or [])
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
        gpus = _facts().get("gpus") or []
        label = gpu_label(visible_devices(os.environ, gpus), gpus)
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


def _no_gpu() -> bool:
    try:
        return not int(_facts().get("gpu_count") or 0)
    except Exception:  # noqa: BLE001 - a machine whose GPUs cannot be read has none usable here
        return True


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Which GPU ran how many GPU tests (under xdist: each worker's own), and how much of the GPU suite ran."""
    if _GPU_TESTS:
        per_gpu = "; ".join(f"{gpu}: {len(ids)} test{'s' if len(ids) != 1 else ''}"
                            for gpu, ids in sorted(_GPU_TESTS.items()))
        terminalreporter.write_line(f"fp8doctor: GPU tests ran on {per_gpu}")
    line = suite_line(_SUITE)
    if line:
        red = terminalreporter.config.getoption("gpu_required", False) and _no_gpu()
        terminalreporter.write_line(line + (" (--gpu-required: this is a failure)" if red else ""), red=red,
                                    yellow=not red and "skipped" in line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if (session.config.getoption("gpu_required", False) and _SUITE and _no_gpu()
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
