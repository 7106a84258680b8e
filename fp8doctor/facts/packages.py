"""Installed versions (read by fp8doctor.system.interpreter in the diagnosed environment, no imports), plus a child
probe of `transformer_engine.pytorch`."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from fp8doctor.facts.probes import probe_code
from fp8doctor.system.interpreter import DISTRIBUTIONS

TE_IMPORT_PROBE = probe_code(
    "import transformer_engine.pytorch as te\n"
    "info = {'version': getattr(__import__('transformer_engine'), '__version__', None)}\n"
    "try:\n"
    "    if hasattr(te, 'is_fp8_available'):\n"
    "        ok, why = te.is_fp8_available(return_reason=True)\n"
    "    else:\n"
    "        from transformer_engine.pytorch.fp8 import check_fp8_support\n"
    "        ok, why = check_fp8_support()\n"
    "    info['fp8_available'] = bool(ok)\n"
    "    info['fp8_reason'] = why or None\n"
    "except Exception as exc:\n"
    "    info['fp8_available'] = None\n"
    "    info['fp8_reason'] = f'{type(exc).__name__}: {exc}'\n"
    "names = [n for n in ('autocast', 'fp8_autocast') if hasattr(te, n)]\n"
    "info['autocast'] = names[0] if names else None\n"
    "result = info"
)


def version_of(key: str) -> str | None:
    """The version of a DISTRIBUTIONS key in the diagnosed environment. Any other distribution name is fp8doctor's
    own dependency (tabulate, matplotlib) and is read in the environment fp8doctor runs in."""
    if key in DISTRIBUTIONS:
        return package_versions().get(key)
    try:
        return metadata.version(key)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """Installed versions in the diagnosed environment (fp8doctor.system.target: this interpreter or --python's)."""
    from fp8doctor.system import target

    return target.package_versions()


def te_installed(versions: dict[str, str | None]) -> bool:
    return bool(versions.get("transformer-engine") or versions.get("transformer-engine-torch"))


def te_import_fact(versions: dict[str, str | None], probe: dict[str, Any] | None) -> dict[str, Any]:
    """Whether `transformer_engine.pytorch` imports, from the probe result (None when TE is absent)."""
    if not te_installed(versions):
        return {"attempted": False, "ok": None, "error": None, "reason": "Transformer Engine is not installed"}
    if probe is None:
        return {"attempted": False, "ok": None, "error": None, "reason": "probe not run"}
    if probe["ok"]:
        return {"attempted": True, "ok": True, "error": None, "seconds": probe["seconds"], **probe["result"]}
    return {"attempted": True, "ok": False, "error": probe["error"], "seconds": probe["seconds"]}
