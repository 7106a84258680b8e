"""Shared by the probes: the tiny model, FP8 layer counting, and one forked child per case.

The parent imports torch once (the slow part) and forks a child per case; the child sets the case's environment
before it imports accelerate or transformers, so Accelerate's process-wide state is always fresh and every
variable a release reads at import time is already set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

import torch

CASE_TIMEOUT_S = 300


def tiny_model() -> torch.nn.Module:
    """Six Linear layers, every dim a multiple of 16: four stay eligible after the first/last filter."""
    torch.manual_seed(0)
    dims = [32, 64, 64, 64, 64, 64, 32]
    layers: list[torch.nn.Module] = []
    for a, b in zip(dims, dims[1:], strict=False):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def prepare_tiny(accelerator: Any, facts: dict) -> tuple[Any, Any, dict | None]:
    """tiny_model() and an SGD optimizer through `accelerator.prepare`: (model, optimizer, None), or the refusal as
    the observation (stage prepare, with `facts`) in the third place."""
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    try:
        model, optimizer = accelerator.prepare(model, optimizer)
    except Exception as exc:  # noqa: BLE001 - a release that refuses the setup is the observation
        return model, optimizer, {**describe_exception(exc), "stage": "prepare", **facts}
    return model, optimizer, None


def fp8_layers(model: torch.nn.Module) -> int:
    count = 0
    for module in model.modules():
        cls = type(module)
        if cls.__name__.startswith("Float8") or cls.__module__.startswith(("transformer_engine", "msamp")):
            count += 1
    return count


def dataclass_fields(obj: object) -> dict:
    """A recipe dataclass's fields as JSON values (a nested dataclass as a dict of reprs, anything else as repr)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name, "<unset>")
        if dataclasses.is_dataclass(value):
            value = {g.name: repr(getattr(value, g.name, None)) for g in dataclasses.fields(value)}
        out[f.name] = value if isinstance(value, (dict, str, int, float, bool, type(None))) else repr(value)
    return out


def _path_prefixes() -> list[tuple[str, str]]:
    import site

    dirs = set(site.getsitepackages()) | {p for p in sys.path if p.endswith("site-packages")}
    pairs = [(p, "<site-packages>") for p in dirs]
    pairs += [(sys.prefix, "<cell>"), (sys.base_prefix, "<python>"), (tempfile.gettempdir(), "<tmp>"),
              (os.path.expanduser("~"), "<home>")]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def without_paths(text: str) -> str:
    """The text with this machine's paths replaced by placeholders, so records stay machine-independent."""
    for prefix, placeholder in _path_prefixes():
        if prefix and prefix != "/":
            text = text.replace(prefix, placeholder)
    return text


def describe_exception(exc: BaseException) -> dict:
    return {"outcome": "raised", "type": type(exc).__name__, "message": without_paths(str(exc))}


def accelerate_env() -> dict:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("ACCELERATE_")}


def state_facts(accelerator: Any) -> dict:
    state = accelerator.state
    mp = getattr(state, "mixed_precision", None)
    backend = getattr(accelerator, "fp8_backend", None)
    if backend is None:
        backend = getattr(state, "fp8_backend", None)
    return {
        "mixed_precision": str(mp) if mp is not None else None,
        "fp8_backend": None if backend is None else str(getattr(backend, "value", backend)),
    }


def clean_environ(extra: dict | None = None) -> None:
    for key in list(os.environ):
        if key.startswith(("ACCELERATE_", "FP8_")):
            del os.environ[key]
    os.environ.update(extra or {})


def run_in_child(fn: Callable[[dict], dict], case: dict) -> dict:
    """Run fn(case) in a forked child with case['env'] set first; never raises."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            signal.alarm(CASE_TIMEOUT_S)
            sys.stdout.flush()
            os.dup2(2, 1)  # the libraries' prints must not mix with the probe's JSON
            clean_environ(case.get("env"))
            torch.set_num_threads(1)
            with tempfile.TemporaryDirectory() as tmp:
                os.chdir(tmp)
                result = fn(case)
        except BaseException as exc:  # noqa: BLE001 - any failure is the observation
            result = describe_exception(exc)
            result["where"] = "probe"
            result["trace_tail"] = without_paths(traceback.format_exc().strip().splitlines()[-1])
        with os.fdopen(write_fd, "w") as out:
            out.write(json.dumps(result, default=str))
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return {"outcome": "crashed", "status": status}
    return json.loads(data)


def preload(modules: tuple[str, ...]) -> None:
    """Import modules once in the parent so each forked case skips the cost. Only modules that read no
    ACCELERATE_*/FP8_* variable at import time belong here (checked for the releases in cells.yaml)."""
    import contextlib
    import importlib

    for name in modules:
        with contextlib.suppress(Exception):  # the child meets the same failure and records it
            importlib.import_module(name)


def selected(case: dict, only: dict | None) -> bool:
    """Whether a case matches LAB_ONLY_INPUTS ({input: [values]}, `env` nested as {variable: [values]})."""
    for key, allowed in (only or {}).items():
        if key == "env":
            if any(case.get("env", {}).get(var) not in values for var, values in allowed.items()):
                return False
        elif case.get(key) not in allowed:
            return False
    return True


def main(cases: list[dict], fn: Callable[[dict], dict], preload_modules: tuple[str, ...] = ()) -> None:
    """Print {"cases": [...]} where each case is its inputs plus its observed result (only the cases matching
    LAB_ONLY_INPUTS when lab/run.py passes `--only-inputs`)."""
    only = json.loads(os.environ.pop("LAB_ONLY_INPUTS", "") or "null")
    preload(preload_modules)
    results = []
    for case in (c for c in cases if selected(c, only)):
        observed = run_in_child(fn, case)
        results.append({"inputs": {k: v for k, v in case.items()}, **observed})
    json.dump({"cases": results}, sys.stdout, indent=None, sort_keys=True)
    sys.stdout.write("\n")
