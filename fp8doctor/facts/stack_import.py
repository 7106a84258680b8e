"""Whether the training stack imports in the diagnosed interpreter, read once in a child probe: transformers'
TrainingArguments, AutoModelForCausalLM, LlamaForCausalLM (the model every run builds) and Trainer, and
accelerate's Accelerator.

transformers' lazy import hides the real failure behind "Could not import module 'Trainer'" (a torchvision built
for another torch: "RuntimeError: operator torchvision::nms does not exist"), so the fact keeps the innermost
cause of each failure's chain, the package whose code raised it and its innermost frame there, read from module
names (no path).
"""

from __future__ import annotations

from typing import Any

from fp8doctor.facts.probes import probe_code
from fp8doctor.knowledge.environment_fixes import TORCH_ADDONS, build_tag

IMPORTS = (("transformers", "TrainingArguments"), ("transformers", "AutoModelForCausalLM"),
           ("transformers", "LlamaForCausalLM"), ("transformers", "Trainer"), ("accelerate", "Accelerator"))
# A broken import can take a minute to fail on a loaded machine (transformers imports torch and more first).
TIMEOUT_S = 180.0
MESSAGE_CHARS = 300
CHILD_CHARS = 4000  # the child's cut: long enough that a secret is whole when redacted, before MESSAGE_CHARS
# Frames of these modules only carry the import; the culprit is the first package below them.
CARRIERS = ("__main__", "importlib", "_frozen_importlib", "_frozen_importlib_external", "transformers",
            "accelerate")

PROBE = probe_code(
    "import importlib, traceback\n"
    f"CARRIERS = {CARRIERS!r}\n"
    "def line(e):\n"
    "    text = str(e).strip().splitlines()\n"
    f"    return (type(e).__name__ + ': ' + (text[0] if text else ''))[:{CHILD_CHARS}]\n"
    "imports = {}\n"
    f"for mod, name in {IMPORTS!r}:\n"
    "    try:\n"
    "        getattr(importlib.import_module(mod), name)\n"
    "        imports[mod + '.' + name] = None\n"
    "    except Exception as exc:\n"
    "        chain, x = [], exc\n"
    "        while x is not None and len(chain) < 16 and all(x is not c for c in chain):\n"
    "            chain.append(x)\n"
    "            x = x.__cause__ or x.__context__\n"
    "        root, package, where = chain[-1], None, None\n"
    "        for frame, lineno in traceback.walk_tb(root.__traceback__):\n"
    "            module = str(frame.f_globals.get('__name__') or '')\n"
    "            top = module.split('.')[0]\n"
    "            if package is None and module and top not in CARRIERS:\n"
    "                package = top\n"
    "            elif package is not None and top != package:\n"
    "                break\n"
    "            if package is not None:\n"
    "                where = f'{module}:{lineno}'\n"
    "        imports[mod + '.' + name] = {'error': line(exc), 'cause': line(root), 'package': package,\n"
    "                                     'where': where, 'depth': len(chain)}\n"
    "result = {'imports': imports}"
)


def wanted(versions: dict[str, str | None]) -> bool:
    return bool(versions.get("transformers") or versions.get("accelerate"))


def worth_probing(versions: dict[str, str | None]) -> tuple[bool, str]:
    """(probe?, why): the probe imports torch and transformers (seconds), so it runs where the cause the lab saw
    can be present: a torch add-on whose build tag differs from torch's (or torch missing)."""
    if not wanted(versions):
        return False, "neither transformers nor accelerate is installed"
    torch = versions.get("torch")
    if not torch:
        return True, "torch is not installed"
    addons = {name: versions[name] for name in TORCH_ADDONS if versions.get(name)}
    odd = [f"{name} {v}" for name, v in addons.items() if build_tag(v) != build_tag(torch)]
    if odd:
        return True, f"{', '.join(odd)} built differently from torch {torch}"
    shared = f" and {', '.join(f'{n} {v}' for n, v in addons.items())} share its build" if addons else \
        " and no compiled torch add-on (torchvision, torchaudio) is installed"
    return False, (f"not probed: torch {torch}{shared}; the lab saw these imports break only where an add-on was "
                   "built for another torch (`fp8doctor env --check stack.imports` probes anyway)")


def stack_import_fact(versions: dict[str, str | None], probe: dict[str, Any] | None) -> dict[str, Any]:
    """{attempted, ok (None: unknown), failed: {"transformers.Trainer": {error, cause, package, where}}, reason}.
    Only an import seen failing makes ok False: a probe that timed out or printed nothing says nothing."""
    from fp8doctor.redact import redact

    if not wanted(versions):
        return {"attempted": False, "ok": None, "failed": {}, "reason": "neither transformers nor accelerate is "
                                                                        "installed"}
    if probe is None:
        return {"attempted": False, "ok": None, "failed": {}, "reason": worth_probing(versions)[1]}
    if not probe["ok"]:
        return {"attempted": True, "ok": None, "failed": {}, "reason": f"the import probe failed: {probe['error']}",
                "seconds": probe["seconds"]}
    imports = (probe.get("result") or {}).get("imports")
    if not isinstance(imports, dict):
        return {"attempted": True, "ok": None, "failed": {}, "reason": "the import probe printed no imports"}
    # only the imports of installed packages are judged (accelerate alone has no transformers to import)
    failed = {str(k): {f: redact(str(v.get(f)))[:MESSAGE_CHARS] if v.get(f) is not None else None
                       for f in ("error", "cause", "package", "where")}
              for k, v in imports.items() if isinstance(v, dict) and versions.get(str(k).split(".")[0])}
    tried = [k for k in imports if str(k) not in failed and versions.get(str(k).split(".")[0])]
    return {"attempted": True, "ok": not failed, "imported": tried, "failed": failed, "reason": None,
            "seconds": probe["seconds"]}


def culprit(fact: dict[str, Any], names: tuple[str, ...] | None = None) -> dict[str, Any] | None:
    """The first failed import (of `names`, when given) with its cause, or None."""
    for name, info in (fact.get("failed") or {}).items():
        if names is None or name in names:
            return {"import": name, **info}
    return None


def broken_sentence(fact: dict[str, Any], names: tuple[str, ...] | None = None) -> str | None:
    """One sentence naming what does not import and why (the env finding's and the repro rows' reason)."""
    c = culprit(fact, names)
    if c is None:
        return None
    failed = [n for n in fact["failed"] if names is None or n in names]
    cause = c.get("cause") or c.get("error")
    where = f" in {c['package']} ({c['where']})" if c.get("package") else ""
    outer = f" ({c['error']})" if c.get("error") and c.get("error") != cause else ""
    return (f"this environment cannot import {', '.join(failed)}{outer}: the underlying error is {cause}{where}. "
            "No training run can start here until that import works; it is not an FP8 result.")
