"""The user's stack: does an installed trainer framework patch Accelerator.__init__ (the reference report's
monkey-patch that injects an FP8 recipe into whatever mixed precision the Trainer chose)? And does the training
stack import at all?"""

from __future__ import annotations

from typing import Any

from fp8doctor.facts.stack_import import broken_sentence, culprit
from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.environment_fixes import broken_import_fix
from fp8doctor.knowledge.fixes import render_all

PATCH_FIX = ("Remove the patch and let Accelerate own FP8: set the mixed precision to fp8 where your launcher reads "
             "it (ACCELERATE_MIXED_PRECISION=fp8 or an `accelerate launch` config with mixed_precision: fp8, and "
             "bf16: false in the training config); `fp8doctor repro` shows which of these reaches FP8 here.")


def check_accelerator_patches(facts: dict[str, Any]) -> Finding:
    scanned = facts.get("accelerator_patches") or {}
    installed = {name: info for name, info in scanned.items() if info}
    if not installed:
        names = ", ".join(scanned) or "LLaMA-Factory, axolotl, TRL"
        return Finding("stack.accelerator-patch", Level.SKIP, "No trainer framework installed to read",
                       f"none of {names} is installed")
    sites = [f"{name} {info.get('version') or '?'}: {where}" for name, info in installed.items()
             for where in info.get("patches") or []]
    read = ", ".join(f"{name} {info.get('version') or '?'} ({info.get('files_read', 0)} files)"
                     for name, info in installed.items())
    if not sites:
        return Finding("stack.accelerator-patch", Level.OK, f"No Accelerator.__init__ patch in {read}")
    return Finding("stack.accelerator-patch", Level.WARN,
                   f"Accelerator.__init__ is patched by your installed framework ({len(sites)} place(s))",
                   "Assigned at " + "; ".join(sites) + ". A patch that injects an FP8 recipe handler makes "
                   "Accelerator() raise the reference report's ValueError whenever the Trainer's mixed precision "
                   "is not fp8 (bf16: true), or silently trains in bf16 where the patch does not fire.", PATCH_FIX)


def check_stack_imports(facts: dict[str, Any]) -> Finding:
    fact = facts.get("stack_import") or {}
    if fact.get("ok") is None:
        title = "Whether the training stack imports is unknown" if fact.get("attempted") else \
            "The training stack's imports were not probed"
        return Finding("stack.imports", Level.SKIP, title, fact.get("reason") or "not probed")
    if fact["ok"]:
        return Finding("stack.imports", Level.OK, "transformers and accelerate import: "
                       + ", ".join(fact.get("imported") or []))
    c = culprit(fact) or {}
    fix = broken_import_fix(c.get("package"), (facts.get("packages") or {}).get("torch"))
    return Finding("stack.imports", Level.FAIL,
                   f"The training stack does not import: {', '.join(fact['failed'])}",
                   str(broken_sentence(fact)), render_all([fix]))
