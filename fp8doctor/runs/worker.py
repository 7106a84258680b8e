"""Run one RunSpec in this (child) process and write exactly one JSON result.

    python -m fp8doctor.runs.worker SPEC_JSON_PATH RESULT_JSON_PATH

Every exception of the run becomes outcome "raised" with type, message and where; the result file is written
atomically (temp file + rename) so a reader never sees half a result.
FP8DOCTOR_TEST_FAULT=hang|segv|abort|kill|raise|exit injects a fault before anything is imported; oom[:MiB] caps the
address space (RLIMIT_AS) at what is mapped now plus MiB (default 256) and lets the run go on (tests of the pool's
timeout and crash handling use it).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import time
from typing import Any

FAULT_ENV = "FP8DOCTOR_TEST_FAULT"
VERSION_DISTS = {"torch": "torch", "accelerate": "accelerate", "transformers": "transformers", "torchao": "torchao",
                 "transformer_engine": "transformer-engine"}


def versions() -> dict[str, str | None]:
    from fp8doctor.facts.packages import version_of

    return {key: version_of(dist) for key, dist in VERSION_DISTS.items()}


def base_result(spec_dict: dict[str, Any]) -> dict[str, Any]:
    return {
        "spec": spec_dict, "outcome": None, "error": None, "skip_reason": None, "accelerator": None,
        "fp8_layers": [], "eligible_layers": [], "forwards": {}, "fp8_active": False, "losses": [],
        "step_times_s": [], "tokens_per_s": None, "peak_mem_bytes": None, "device": None, "emulated": False,
        "timings_s": {}, "notes": [], "versions": versions(), "python": platform.python_version(), "pid": os.getpid(),
    }


def inject_fault(kind: str | None) -> None:
    if not kind:
        return
    if kind == "hang":
        while True:
            time.sleep(3600)
    if kind == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(5)
    if kind == "abort":
        os.abort()
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind.startswith("oom"):
        # Cap the address space (RLIMIT_AS) a little above what the process maps now, then let the run go on:
        # it fails where a real run on a memory-starved machine would (imports, model build, first step).
        import resource

        headroom = int(kind.partition(":")[2] or 256) * 1024 * 1024
        with open("/proc/self/statm", encoding="ascii") as fh:
            mapped = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (mapped + headroom, mapped + headroom))
        return
    if kind == "exit":
        os._exit(3)
    if kind == "raise":
        raise RuntimeError("fault injected by FP8DOCTOR_TEST_FAULT=raise")


def execute(spec_dict: dict[str, Any], result: dict[str, Any]) -> None:
    """Run the spec, filling `result` in place so that what was observed before an exception survives it."""
    from fp8doctor.runs.spec import RunSpec

    spec = RunSpec.from_dict(spec_dict)
    spec.validate()
    inject_fault(os.environ.get(FAULT_ENV))
    t = time.perf_counter()
    from fp8doctor.runs.entries import entry_module

    module = entry_module(spec.entry)
    launches = module.LAUNCHES_PROCESSES
    if launches:
        # The launcher's ranks import the libraries; importing torch here too would only cost seconds.
        from fp8doctor.runs.machine import default_device

        device = spec.device or default_device()
    else:
        import torch  # timed here so "imports" is comparable across entries

        from fp8doctor.runs.entries.common import resolve_device

        device = resolve_device(spec)
        result["torch_threads"] = torch.get_num_threads()
    from fp8doctor.runs.entries.common import Context

    emulate = False
    if spec.backend == "torchao" and device == "cpu":
        from fp8doctor.runs.backends.torchao import EMULATE_ENV, enable_cpu_emulation

        os.environ[EMULATE_ENV] = "1"
        if not launches:
            enable_cpu_emulation()
        emulate = True
    result["timings_s"]["imports"] = round(time.perf_counter() - t, 4)
    result["device"] = device
    ctx = Context(spec=spec, device=device, result=result, emulate=emulate)
    module.run(ctx)
    if device.startswith("cuda") and not launches:
        import torch

        result["device"] = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    if result["outcome"] is None:
        result["outcome"] = "finished"


def write_json(path: str, obj: dict[str, Any]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, default=str)
    os.replace(tmp, path)


def run_to_file(spec_path: str, result_path: str) -> None:
    """Run the spec in SPEC_PATH and write its one result to RESULT_PATH (the cold worker and a warm child)."""
    t0 = time.perf_counter()
    with open(spec_path, encoding="utf-8") as fh:
        spec_dict = json.load(fh)
    result = base_result(spec_dict)
    try:
        execute(spec_dict, result)
    except BaseException as exc:  # noqa: BLE001 - every failure of the run is a result
        from fp8doctor.runs.entries.common import describe_exception

        result["outcome"] = "raised"
        result["error"] = describe_exception(exc)
    result["timings_s"]["total"] = round(time.perf_counter() - t0, 4)
    write_json(result_path, result)


def exit_now(code: int = 0) -> None:
    """End the process once its result is on disk: no interpreter teardown (module finalizers, thread joins,
    freeing every tensor), which only costs time here. Launched ranks were already waited for."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m fp8doctor.runs.worker SPEC_JSON_PATH RESULT_JSON_PATH", file=sys.stderr)
        return 2
    from fp8doctor.system.lifeline import guard_own_group

    guard_own_group()  # before any import starts a thread: this run's group dies with fp8doctor
    run_to_file(*argv)
    exit_now(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
