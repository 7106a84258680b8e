"""GPU rules: a visible CUDA GPU with compute capability 8.9+, and which FP8 recipe families it runs."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.capability import FAMILY_MIN_CC, cc_str
from fp8doctor.rules.common import intent, intent_text

GPU_FIX = ("Run on a GPU with compute capability 8.9 or higher (Ada: L4, L40S, RTX 4090; Hopper: H100, H200; "
           "Blackwell: B200), e.g. on a compute node rather than a login node; check `nvidia-smi` and "
           "CUDA_VISIBLE_DEVICES.")


def check_gpu(facts: dict[str, Any]) -> Finding:
    g = facts["gpu"]
    signs = intent(facts)
    if not g["visible"]:
        detail = g["status"] + "."
        detail += (f" {intent_text(signs)}: whether the GPU it will run on supports FP8 is unknown from here." if signs
                   else " fp8doctor's CPU checks (torchao emulation) still run, but FP8 training needs a GPU.")
        return Finding("gpu.none", Level.WARN, "No CUDA GPU visible: FP8 hardware support unknown here", detail,
                       GPU_FIX)
    best = max(g["visible"], key=lambda d: tuple(d.get("cc") or (0, 0)))
    cc = tuple(best.get("cc") or (0, 0))
    label = f"{best['name']} (compute capability {cc[0]}.{cc[1]})"
    if cc < (8, 9):
        level = Level.FAIL if signs else Level.WARN
        return Finding("gpu.too-old", level, f"{label} cannot run FP8: it needs compute capability 8.9+",
                       "Accelerate turns mixed_precision fp8 into fp16 on such a GPU with only a warning.", GPU_FIX)
    return Finding("gpu.ok", Level.OK, f"{len(g['visible'])} GPU(s), best {label}: FP8 capable")


def check_fp8_families(facts: dict[str, Any]) -> Finding:
    support = facts["gpu"]["fp8_support"]
    lines = [f"{fam}: {'yes' if s['supported'] else 'no'}, {s['reason']}" for fam, s in support.items()]
    yes = [fam for fam, s in support.items() if s["supported"]]
    if not facts["gpu"]["visible"]:
        needs = ", ".join(f"{fam} {cc_str(cc)}" for fam, cc in FAMILY_MIN_CC.items())
        return Finding("gpu.fp8-families", Level.SKIP, "FP8 recipe families: unknown, no CUDA GPU visible",
                       f"Minimum compute capability: {needs} (MXFP8 not from 12.0 up: Transformer Engine 2.6+ "
                       "refuses it there).")
    if not yes:
        return Finding("gpu.fp8-families", Level.SKIP, "FP8 recipe families: none supported on this GPU",
                       "\n".join(lines))
    return Finding("gpu.fp8-families", Level.OK, "FP8 recipe families supported: " + ", ".join(yes), "\n".join(lines))
