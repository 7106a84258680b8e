"""What a command needs installed in the diagnosed environment, and the one line that says so when it is missing.

fp8doctor never requires torch, accelerate, transformers, torchao or Transformer Engine (installing the doctor must
not change what it diagnoses): `env` reports them as facts; the commands that train (repro, matrix, report) check
here first and end with exit 2 and the install command when one is missing.
"""

from __future__ import annotations

from importlib import metadata

from fp8doctor.system.errors import UsageError

# The libraries a short training run imports, whatever the backend (the backend's own is a per-run skip reason).
RUN_LIBRARIES = ("torch", "accelerate", "transformers")
CPU_EXTRA = "cpu"


def cpu_set() -> list[str]:
    """The known-good CPU set, read from fp8doctor's own `cpu` extra (pyproject.toml owns the pins)."""
    try:
        requires = metadata.requires("fp8doctor") or []
    except metadata.PackageNotFoundError:
        return []
    marker = f'extra == "{CPU_EXTRA}"'
    return [r.split(";")[0].strip() for r in requires if marker in r.replace("'", '"')]


def install_hint(missing: list[str]) -> str:
    from fp8doctor.system import target

    pins = {p.split("=")[0].split(">")[0].split("<")[0].strip(): p for p in cpu_set()}
    pip = f"{target.python()} -m pip install" if target.is_other() else "pip install"
    known = " ".join(pins.get(name, name) for name in missing)
    return (f"install the versions you train with, or this known-good CPU set: {pip} {known}"
            + (" (torch first on a CPU machine: a bare `torch` requirement pulls a CUDA build)"
               if "torch" in missing else ""))


def missing(names: tuple[str, ...] = RUN_LIBRARIES) -> list[str]:
    from fp8doctor.facts.packages import package_versions

    versions = package_versions()
    return [name for name in names if not versions.get(name)]


class MissingLibrary(UsageError):
    """A command needs a library that the diagnosed environment does not have."""


def require(command: str, names: tuple[str, ...] = RUN_LIBRARIES) -> None:
    """Raise MissingLibrary (exit 2, one line) when the diagnosed environment lacks one of `names`, or its Python
    is older than the runs support."""
    from fp8doctor.system import target

    where = target.describe()
    if target.python_version()[:2] < target.MIN_RUN_PYTHON:
        need = ".".join(map(str, target.MIN_RUN_PYTHON))
        raise MissingLibrary(f"{command} starts training runs with {where}, which is older than Python {need}")
    absent = missing(names)
    if absent:
        raise MissingLibrary(f"{command} needs {', '.join(absent)} in the diagnosed environment ({where} has "
                             f"{'none of them' if len(absent) > 1 else 'no ' + absent[0]}); "
                             + install_hint(absent))


def facts() -> dict[str, object]:
    """For `env`: whether training runs (repro, matrix, report) can start in the diagnosed environment."""
    absent = missing()
    return {"libraries": list(RUN_LIBRARIES), "missing": absent,
            "install": install_hint(absent) if absent else None}
