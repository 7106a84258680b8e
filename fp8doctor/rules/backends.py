"""Backend rules: is any FP8 backend usable (torchao, Transformer Engine, MS-AMP), and does TE import."""

from __future__ import annotations

from typing import Any

from fp8doctor.capability import backend_available
from fp8doctor.findings import Finding, Level
from fp8doctor.rules.common import intent, intent_text, pkg, requested_backends


def _te(facts: dict[str, Any]) -> tuple[bool, str]:
    installed = {"transformer-engine": pkg(facts, "transformer-engine") or pkg(facts, "transformer-engine-torch")}
    te = facts.get("te_import", {})
    return backend_available("te", installed, te.get("error") if te.get("ok") is False else None)


def check_any_backend(facts: dict[str, Any]) -> Finding:
    usable = []
    if backend_available("torchao", facts.get("packages", {}))[0]:
        usable.append(f"torchao {pkg(facts, 'torchao')}")
    if _te(facts)[0]:
        te_version = pkg(facts, "transformer-engine") or pkg(facts, "transformer-engine-torch")
        usable.append(f"Transformer Engine {te_version}")
    if pkg(facts, "msamp"):
        usable.append(f"MS-AMP {pkg(facts, 'msamp')}")
    if usable:
        return Finding("backend.any", Level.OK, "Usable FP8 backend: " + ", ".join(usable))
    signs = intent(facts)
    return Finding(
        "backend.none", Level.FAIL if signs else Level.WARN, "No FP8 backend is installed",
        (intent_text(signs) + "; " if signs else "")
        + "Accelerate needs torchao, Transformer Engine or MS-AMP for fp8.",
        "pip install torchao   # or, on a CUDA machine: pip install --no-build-isolation 'transformer-engine[pytorch]'",
    )


def check_transformer_engine(facts: dict[str, Any]) -> Finding:
    ok, reason = _te(facts)
    te = facts.get("te_import", {})
    wanted = requested_backends(facts).get("TE")
    if not ok and not (pkg(facts, "transformer-engine") or pkg(facts, "transformer-engine-torch")):
        if wanted:
            return Finding("backend.te-missing", Level.FAIL, f"Transformer Engine is requested ({wanted}) but not "
                           "installed", reason,
                           "pip install --no-build-isolation 'transformer-engine[pytorch]'   # on a CUDA machine, or "
                           "switch the backend to AO (torchao)")
        return Finding("backend.te", Level.SKIP, "Transformer Engine: not installed", reason,
                       "Only needed for fp8_backend te; on a CUDA machine: pip install 'fp8doctor[te]'")
    if not ok:
        return Finding("backend.te-import", Level.FAIL, "Transformer Engine is installed but does not import", reason,
                       "Reinstall TE against the installed torch: pip install --no-build-isolation --force-reinstall "
                       "'transformer-engine[pytorch]' (its torch extension is built for one torch/CUDA version).")
    if te.get("fp8_available") is False:
        return Finding("backend.te-fp8", Level.WARN, "Transformer Engine imports but reports FP8 unavailable",
                       f"Transformer Engine says: {te.get('fp8_reason')}")
    how = f", autocast API: te.{te['autocast']}" if te.get("autocast") else ""
    version = te.get("version") or pkg(facts, "transformer-engine") or ""
    return Finding("backend.te", Level.OK, f"Transformer Engine {version} imports{how}")


def check_torchao(facts: dict[str, Any]) -> Finding:
    ok, reason = backend_available("torchao", facts.get("packages", {}))
    wanted = requested_backends(facts).get("AO")
    if not ok and wanted:
        return Finding("backend.torchao-missing", Level.FAIL, f"torchao is requested ({wanted}) but not installed",
                       reason, "pip install torchao")
    if ok:
        return Finding("backend.torchao", Level.OK, f"torchao {pkg(facts, 'torchao')} installed (fp8_backend ao)")
    return Finding("backend.torchao", Level.SKIP, "torchao: not installed", reason)
