"""Summarise lab/te/gpu_check.sh's outputs into OUT/summary.json, and compare TE's real availability answers
(asked in a child process, as `fp8doctor env` does) with what the doctor predicts from the static TE lab.

    python lab/te/gpu_summary.py OUT_DIR
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

# Asked of the installed TE in a child (never imported into the doctor's process); prints one JSON line.
TE_ANSWERS = r"""
import json, torch
import transformer_engine.pytorch as te
out = {"cc": list(torch.cuda.get_device_capability(0)), "cuda": torch.version.cuda, "families": {}}
names = {"per-tensor": ("is_fp8_available", "check_fp8_support"),
         "mxfp8": ("is_mxfp8_available", "check_mxfp8_support"),
         "block": ("is_fp8_block_scaling_available", "check_fp8_block_scaling_support"),
         "nvfp4": ("is_nvfp4_available", "check_nvfp4_support")}
for family, (new, old) in names.items():
    if hasattr(te, new):
        ok, why = getattr(te, new)(return_reason=True)
    else:
        import importlib
        fp8 = importlib.import_module("transformer_engine.pytorch.fp8")
        if not hasattr(fp8, old):
            continue
        ok, why = getattr(fp8, old)()
    out["families"][family] = [bool(ok), why]
print(json.dumps(out))
"""


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rc(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pytest_counts(xml: Path) -> dict[str, int] | None:
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def te_predictions(version: str | None) -> dict[str, Any]:
    """TE's real answers vs the doctor's prediction for the installed release (None when TE is absent)."""
    from fp8doctor.knowledge.capability import te_recipe_supported
    from fp8doctor.runs.backends.te import offered_recipes

    if not version:
        return {"te": None, "note": "Transformer Engine is not installed: nothing to compare"}
    p = subprocess.run([sys.executable, "-c", TE_ANSWERS], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        return {"te": version, "error": (p.stderr.strip().splitlines() or ["no output"])[-1]}
    real = json.loads(p.stdout.strip().splitlines()[-1])
    cc, cuda = tuple(real["cc"]), float(real["cuda"]) if real["cuda"] else None
    family_of = {"delayed_hybrid": "per-tensor", "current": "per-tensor", "block": "block", "mxfp8": "mxfp8",
                 "nvfp4": "nvfp4"}
    rows = []
    for recipe in offered_recipes(version):
        family = family_of.get(recipe)
        if family is None or family not in real["families"]:
            continue
        ok, why = te_recipe_supported(cc, recipe, version, cuda=cuda)
        te_ok, te_why = real["families"][family]
        rows.append({"recipe": recipe, "te": [te_ok, te_why], "doctor": [ok, why],
                     "agree": ok is te_ok and (te_ok or te_why in why)})
    return {"te": version, "cc": list(cc), "cuda": real["cuda"], "recipes": rows,
            "all_agree": all(r["agree"] for r in rows)}


def main(out: Path) -> int:
    env = _read(out / "env.json") or {}
    matrix = _read(out / "matrix_te.json") or {}
    packages = env.get("facts", {}).get("packages", {}) if isinstance(env, dict) else {}
    te_version = packages.get("transformer-engine") or packages.get("transformer-engine-torch")
    findings = [f for f in env.get("findings", []) if str(f.get("id", "")).startswith(("backend.te", "versions."))]
    summary = {
        "kind": "fp8doctor.gpu_check",
        "pytest_gpu": {"rc": _rc(out / "pytest_gpu.rc"), "counts": pytest_counts(out / "pytest_gpu.xml")},
        "matrix_te": {"rc": _rc(out / "matrix_te.rc"), "summary": matrix.get("summary")},
        "env": {"rc": _rc(out / "env.rc"), "te_findings": findings},
        "te_vs_doctor": te_predictions(te_version),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    ok = summary["pytest_gpu"]["rc"] in (0, 5) and summary["matrix_te"]["rc"] == 0 and \
        summary["te_vs_doctor"].get("all_agree", True) and "error" not in summary["te_vs_doctor"]
    print(f"gpu_check: {'ok' if ok else 'FAILED'}; summary in {out / 'summary.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python lab/te/gpu_summary.py OUT_DIR", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(Path(sys.argv[1])))
