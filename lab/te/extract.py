"""Extract, with `ast` only, what each TE release and each Accelerate release says about the TE API.

    python lab/te/extract.py            # fetch (cached) + write lab/observations/te/*.json and accelerate_te/*.json

Observations are deterministic JSON (sorted keys, no timestamps, no local paths): re-running on the same wheels
writes the same bytes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import astscan  # noqa: E402
from fetch import TE_DIST, fetch  # noqa: E402
from releases import ACCELERATE_RELEASES, TE_RELEASES  # noqa: E402

OBSERVATIONS = HERE.parent / "observations"

# Modules whose top-level names the doctor and Accelerate reach (attribute access or `from ... import`).
TE_MODULES = ("transformer_engine.pytorch", "transformer_engine.pytorch.fp8", "transformer_engine.pytorch.quantization",
              "transformer_engine.common.recipe")
# Names whose defining module and signature are recorded.
TE_TARGETS = ("Linear", "LayerNormLinear", "LayerNormMLP", "LayerNorm", "RMSNorm", "GroupedLinear", "TransformerLayer",
              "fp8_autocast", "autocast", "fp8_model_init", "quantized_model_init", "FP8GlobalStateManager",
              "check_fp8_support", "check_mxfp8_support", "check_fp8_block_scaling_support", "check_nvfp4_support",
              "is_fp8_available", "is_mxfp8_available", "is_fp8_block_scaling_available", "is_nvfp4_available",
              "get_default_fp8_recipe", "get_default_recipe")
INIT_ATTRIBUTES_OF = ("Linear",)  # classes whose instance attributes the doctor reads (fp8doctor.numerics)
AVAILABILITY_PREFIXES = ("check_", "_compute_", "is_")
AVAILABILITY_WORDS = ("fp8", "mxfp8", "nvfp4", "block_scaling")
# Accelerate files with TE integration or FP8 handling.
ACCELERATE_FILES = ("accelerate/utils/transformer_engine.py", "accelerate/accelerator.py",
                    "accelerate/utils/dataclasses.py")
RECIPE_HANDLERS = ("TERecipeKwargs", "FP8RecipeKwargs")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheel_sources(wheel: Path, top: str, packages: set[str] | None = None) -> dict[str, str]:
    """Module name -> source for every .py file under `top/` in a wheel (read from the zip, never imported)."""
    out = {}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith(top + "/") and name.endswith(".py"):
                mod = name[:-3].replace("/", ".")
                if mod.endswith(".__init__") and packages is not None:
                    packages.add(mod.removesuffix(".__init__"))
                mod = mod.removesuffix(".__init__")
                out[mod] = z.read(name).decode("utf-8")
    return out


def loaded_on_import(root: str, trees: dict[str, ast.Module], packages: set[str]) -> set[str]:
    """Modules that `import root` executes, following module-level imports (the closure, as Python would)."""
    def targets(mod: str) -> set[str]:
        out: set[str] = set()
        base = mod if mod in packages else mod.rpartition(".")[0]
        for node in astscan.top_level_statements(trees[mod]):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    pkg = base
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    src = f"{pkg}.{node.module}" if node.module else pkg
                else:
                    src = node.module or ""
                out.add(src)
                out.update(f"{src}.{a.name}" for a in node.names if f"{src}.{a.name}" in trees)
        return out

    seen: set[str] = set()
    todo = [root]
    while todo:
        mod = todo.pop()
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in trees and name not in seen:
                seen.add(name)
                todo.extend(targets(name))
    return seen


def _is_availability(name: str) -> bool:
    return name.startswith(AVAILABILITY_PREFIXES) and any(w in name for w in AVAILABILITY_WORDS) and (
        name.endswith("_support") or name.endswith("_available"))


def extract_te(release: str, wheel: Path) -> dict[str, Any]:
    packages: set[str] = set()
    sources = wheel_sources(wheel, "transformer_engine", packages)
    trees = {m: ast.parse(s) for m, s in sources.items() if m.startswith(("transformer_engine.pytorch",
                                                                          "transformer_engine.common"))}
    loaded = loaded_on_import("transformer_engine.pytorch", trees, packages)
    modules = {}
    for mod in TE_MODULES:
        if mod in trees:
            subs = {m.split(".")[-1] for m in trees if m.startswith(mod + ".") and m.count(".") == mod.count(".") + 1}
            # A submodule is an attribute of its package only once something imported it.
            bound = {s for s in subs if f"{mod}.{s}" in loaded}
            modules[mod] = {"names": sorted(astscan.bound_names(trees[mod])), "submodules": sorted(subs),
                            "submodules_loaded_by_import": sorted(bound),
                            "deprecated": astscan.deprecation_message(trees[mod])}
    defined_in: dict[str, list[str]] = {}
    signatures: dict[str, dict[str, Any]] = {}
    init_attributes: dict[str, list[str]] = {}
    for mod, tree in sorted(trees.items()):
        if not mod.startswith("transformer_engine.pytorch"):
            continue
        defs = astscan.definitions(tree)
        for name in TE_TARGETS:
            if name in defs:
                defined_in.setdefault(name, []).append(mod)
                signatures.setdefault(name, {"module": mod, **astscan.signature(defs[name])})
                if name in INIT_ATTRIBUTES_OF and isinstance(defs[name], ast.ClassDef):
                    init_attributes.setdefault(name, astscan.init_attributes(defs[name]))
    availability = {}
    for mod in ("transformer_engine.pytorch.fp8", "transformer_engine.pytorch.quantization",
                "transformer_engine.pytorch.utils"):
        if mod not in trees:
            continue
        for name, node in astscan.definitions(trees[mod]).items():
            if isinstance(node, ast.FunctionDef) and _is_availability(name):
                availability[f"{mod}.{name}"] = _availability(node)
            if isinstance(node, ast.ClassDef) and name == "FP8GlobalStateManager":
                for meth in node.body:
                    if isinstance(meth, ast.FunctionDef) and _is_availability(meth.name):
                        availability[f"{mod}.{name}.{meth.name}"] = _availability(meth)
    recipe_tree = trees["transformer_engine.common.recipe"]
    recipes, formats = {}, []
    for node in astscan.top_level_statements(recipe_tree):
        if not isinstance(node, ast.ClassDef):
            continue
        if node.name == "Format":
            formats = [t.id for s in node.body if isinstance(s, ast.Assign) for t in s.targets
                       if isinstance(t, ast.Name)]
        elif astscan.is_dataclass(node) and (any(ast.unparse(b) == "Recipe" for b in node.bases)
                                             or node.name == "DelayedScaling"):  # 1.x: no Recipe base class
            recipes[node.name] = {"fields": astscan.dataclass_fields(node)}
    return {
        "release": release, "distribution": TE_DIST, "status": "ok",
        "wheel": {"file": wheel.name, "sha256": sha256(wheel)},
        "modules": modules, "defined_in": {k: sorted(v) for k, v in sorted(defined_in.items())},
        "signatures": signatures, "init_attributes": init_attributes,
        "availability": availability, "recipes": recipes, "formats": formats,
    }


def _availability(fn: ast.FunctionDef) -> dict[str, Any]:
    return {"params": astscan.signature(fn)["params"], "decisions": astscan.decisions(fn),
            "calls": astscan.called_names(fn)}


def extract_accelerate(release: str, wheel: Path) -> dict[str, Any]:
    sources = wheel_sources(wheel, "accelerate")
    files: dict[str, Any] = {}
    for rel in ACCELERATE_FILES:
        mod = rel[:-3].replace("/", ".")
        if mod in sources:
            files[rel] = astscan.te_uses(sources[mod])
    handler = None
    dc_tree = ast.parse(sources["accelerate.utils.dataclasses"])
    defs = astscan.definitions(dc_tree)
    for cls in RECIPE_HANDLERS:
        if cls in defs and isinstance(defs[cls], ast.ClassDef) and astscan.dataclass_fields(defs[cls]):
            handler = {"class": cls, "fields": sorted(astscan.dataclass_fields(defs[cls]))}
            break
    popped: set[str] = set()
    te_mod = sources.get("accelerate.utils.transformer_engine", "")
    wrap = astscan.definitions(ast.parse(te_mod)).get("apply_fp8_autowrap") if te_mod else None
    if wrap is not None:
        for node in ast.walk(wrap):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "pop"
                    and ast.unparse(node.func.value) == "kwargs" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                popped.add(node.args[0].value)
    if handler:
        handler["popped"] = sorted(popped)
    return {"release": release, "distribution": "accelerate", "wheel": {"file": wheel.name, "sha256": sha256(wheel)},
            "files": files, "recipe_handler": handler}


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def main() -> int:
    for release in TE_RELEASES:
        wheel, why = fetch(TE_DIST, release)
        if wheel is None:
            data = {"release": release, "distribution": TE_DIST, "status": "no-wheel", "why": why}
        else:
            data = extract_te(release, wheel)
        write(OBSERVATIONS / "te" / f"{release}.json", data)
        print("te", release, data["status"])
    for release in ACCELERATE_RELEASES:
        wheel, why = fetch("accelerate", release)
        if wheel is None:
            print("accelerate", release, "no wheel:", why)
            continue
        write(OBSERVATIONS / "accelerate_te" / f"{release}.json", extract_accelerate(release, wheel))
        print("accelerate", release, "ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
