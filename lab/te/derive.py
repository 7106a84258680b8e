"""Derive the doctor's TE knowledge from the lab's observations (pure: observations in, one dict out).

    python lab/te/derive.py     # writes fp8doctor/knowledge/te_releases.json

tests/test_te_releases.py checks that the shipped JSON equals derive() on the committed observations.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

from packaging.version import Version

HERE = Path(__file__).resolve().parent
OBSERVATIONS = HERE.parent / "observations"
KNOWLEDGE = HERE.parent.parent / "fp8doctor" / "knowledge" / "te_releases.json"

# Recipe family -> the TE function whose body decides it (family names: fp8doctor/knowledge/capability.py).
FAMILY_FUNCTIONS = {"per-tensor": "check_fp8_support", "block": "check_fp8_block_scaling_support",
                    "mxfp8": "check_mxfp8_support", "nvfp4": "check_nvfp4_support"}
# How TE's support functions read the machine, as they appear in their conditions.
VARIABLES = {"get_device_compute_capability()": "cc", "tex.get_cublasLt_version()": "cublaslt",
             "float(torch.version.cuda)": "cuda"}
OPS = {ast.GtE: ">=", ast.Gt: ">", ast.Lt: "<", ast.LtE: "<="}
FLIP = {">=": "<", ">": "<=", "<": ">=", "<=": ">"}
MXFP8_GUARD = "use_mxfp8_block_scaling"


def load(kind: str, root: Path = OBSERVATIONS) -> dict[str, dict[str, Any]]:
    files = sorted((root / kind).glob("*.json"), key=lambda p: Version(p.stem))
    return {p.stem: json.loads(p.read_text()) for p in files}


# --- availability conditions -> rules -----------------------------------------------------------------------------


def atoms(condition: str) -> list[dict[str, Any]]:
    """A TE support condition as a conjunction of comparisons {var, op, value}; raises on anything else."""
    expr = ast.parse(condition, mode="eval").body
    negate = False
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not):
        negate, expr = True, expr.operand
    parts = expr.values if isinstance(expr, ast.BoolOp) and isinstance(expr.op, ast.And) else [expr]
    if negate and len(parts) != 1:
        raise ValueError(f"cannot read negated conjunction: {condition}")
    out = []
    for p in parts:
        if not (isinstance(p, ast.Compare) and len(p.ops) == 1 and type(p.ops[0]) in OPS):
            raise ValueError(f"cannot read TE condition: {condition}")
        var = VARIABLES.get(ast.unparse(p.left))
        if var is None:
            raise ValueError(f"unknown quantity in TE condition: {ast.unparse(p.left)}")
        value = ast.literal_eval(p.comparators[0])
        op = OPS[type(p.ops[0])]
        out.append({"var": var, "op": FLIP[op] if negate else op, "value": list(value) if var == "cc" else value})
    return out


def _functions(te: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Module-level availability functions by bare name (FP8GlobalStateManager methods left out)."""
    return {key.split(".")[-1]: a for key, a in te["availability"].items() if ".FP8GlobalStateManager." not in key}


def support_rules(te: dict[str, Any], family: str) -> dict[str, Any] | None:
    funcs = _functions(te)
    name = FAMILY_FUNCTIONS[family]
    if name not in funcs:
        return None
    fn, chain = funcs[name], [name]
    # Newer releases cache the answer and compute it in a private helper: follow the delegation.
    while not any("ok" in d for d in fn["decisions"]):
        helpers = [c for c in fn["calls"] if c in funcs and c != chain[-1]]
        if len(helpers) != 1:
            raise ValueError(f"TE {te['release']}: cannot follow {name} to its conditions")
        chain.append(helpers[0])
        fn = funcs[helpers[0]]
    rules = [{"when": [a for c in d["if"] for a in atoms(c)], "ok": d["ok"], "reason": d["reason"]}
             for d in fn["decisions"]]
    return {"function": name, "defined_by": chain[-1], "rules": rules}


# --- one TE release --------------------------------------------------------------------------------------------


def te_release(te: dict[str, Any]) -> dict[str, Any]:
    pt = te["modules"]["transformer_engine.pytorch"]
    names = set(pt["names"])
    sigs = te["signatures"]
    autocast = "autocast" if "autocast" in names else "fp8_autocast"
    api = ("transformer_engine.pytorch.is_fp8_available(return_reason=True)" if "is_fp8_available" in names
           else "transformer_engine.pytorch.fp8.check_fp8_support()")
    return {
        "autocast": autocast,
        "autocast_recipe_arg": "recipe" if autocast == "autocast" else "fp8_recipe",
        "autocast_params": {n: [p["name"] for p in sigs[n]["params"]] for n in ("autocast", "fp8_autocast")
                            if n in sigs},
        "deprecated": {n: s["deprecated"] for n, s in sorted(sigs.items()) if s["deprecated"]}
        | {m: d["deprecated"] for m, d in sorted(te["modules"].items()) if d.get("deprecated")},
        "availability_api": api,
        "state_manager": te["defined_in"]["FP8GlobalStateManager"][0],
        "modules": {n: te["defined_in"].get(n, [None])[0] for n in ("Linear", "LayerNormLinear", "LayerNormMLP")},
        "recipes": {cls: sorted(r["fields"]) for cls, r in sorted(te["recipes"].items())},
        "formats": sorted(te["formats"]),
        "support": {fam: support_rules(te, fam) for fam in FAMILY_FUNCTIONS},
    }


# --- Accelerate x TE --------------------------------------------------------------------------------------------


def _exists(te: dict[str, Any], module: str, name: str, how: str = "import") -> bool | None:
    """Whether `module.name` resolves: by import any submodule does, as an attribute only one already imported."""
    mods = te["modules"]
    if module in mods:
        subs = mods[module]["submodules"] if how == "import" else mods[module]["submodules_loaded_by_import"]
        return name in mods[module]["names"] or name in subs
    if f"{module}.{name}" in mods or module in ("transformer_engine", "transformer_engine.common"):
        return True
    return None


def _reached(guards: list[str]) -> str | None:
    """'never' for HPU-only code, MXFP8_GUARD when only the MXFP8 path reaches it, else None (every TE run)."""
    if any("is_hpu_available()" in g and not g.startswith("not (") for g in guards):
        return "never"
    if any(g == MXFP8_GUARD for g in guards):
        return MXFP8_GUARD
    return None


def pair_problems(acc: dict[str, Any], te: dict[str, Any], all_te: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What accelerate `acc` uses that TE release `te` lacks, deprecates, or no longer accepts."""
    problems: dict[tuple[str, ...], dict[str, Any]] = {}

    def add(kind: str, name: str, where: str | None, when: str | None, **extra: Any) -> None:
        key = (kind, name, str(when))
        problems.setdefault(key, {"kind": kind, "name": name, "where": where, "when": when, **extra})

    dep = te_release(te)["deprecated"]
    for rel, found in sorted(acc["files"].items()):
        mod = rel[:-3].replace("/", ".")
        for use in found["uses"] + found["calls"]:
            when = _reached(use["guards"])
            if when == "never":
                continue
            where = f"{mod}.{use['function']}" if use.get("function") else mod
            full = f"{use['module']}.{use['name']}"
            how = use.get("how", "attribute")
            ok = _exists(te, use["module"], use["name"], how)
            if ok is None:
                add("unverified", full, where, when)
            elif not ok and _exists(te, use["module"], use["name"], "import"):
                add("not-loaded", full, where, when)
            elif not ok:
                add("missing", full, where, when)
            if ok and use["name"] in dep and use["module"].startswith("transformer_engine.pytorch"):
                add("deprecated", full, where, when, message=dep[use["name"]])
            if ok and use["module"] in dep:
                add("deprecated", use["module"], where, when, message=dep[use["module"]])
            if "keywords" in use and ok:
                params = _params(te, use["name"])
                if params is not None and not any(p.startswith("**") for p in params):
                    for kw in use["keywords"]:
                        if kw not in params:
                            add("argument", f"{full}({kw}=...)", where, when)
    handler = acc.get("recipe_handler")
    if handler:
        forwarded = [f for f in handler["fields"] if f not in handler["popped"]]
        for cls, when in (("DelayedScaling", None), ("MXFP8BlockScaling", MXFP8_GUARD)):
            if cls == "MXFP8BlockScaling" and MXFP8_GUARD not in handler["fields"]:
                continue
            ever = set().union(*(set(t["recipes"].get(cls, {}).get("fields", {})) for t in all_te))
            have = set(te["recipes"].get(cls, {}).get("fields", {}))
            for f in forwarded:
                if f in ever and f not in have and cls in te["recipes"]:
                    add("recipe-field", f"transformer_engine.common.recipe.{cls}({f}=...)",
                        "accelerate.utils.transformer_engine.apply_fp8_autowrap",
                        f"{f} set" if when is None else f"{when} and {f} set")
    return sorted(problems.values(), key=lambda p: (p["kind"], p["name"], str(p["when"])))


def _params(te: dict[str, Any], name: str) -> list[str] | None:
    if name in te["recipes"]:
        return list(te["recipes"][name]["fields"])
    sig = te["signatures"].get(name)
    if not sig or sig["params"] is None:
        return None
    return [p["name"] for p in sig["params"]]


# not-loaded: a submodule reached as an attribute (`te.fp8`) that `import transformer_engine.pytorch` no longer
# imports: AttributeError unless some other code imported it first.
BREAKING = ("missing", "not-loaded", "argument", "unverified")


def _breaks(problems: list[dict[str, Any]], when: str | None) -> bool:
    return any(p["kind"] in BREAKING and p["when"] in (None, when) for p in problems)


def accelerate_table(accs: dict[str, dict[str, Any]], tes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ok_tes = [t for t in tes.values() if t.get("status") == "ok"]
    grid = {a: {t["release"]: pair_problems(acc, t, ok_tes) for t in ok_tes} for a, acc in accs.items()}
    a_order, t_order = list(accs), [t["release"] for t in ok_tes]
    table: dict[str, dict[str, Any]] = {}
    for a, row in grid.items():
        for t, problems in row.items():
            if not problems:
                continue
            fixes = {}
            for when in (None, MXFP8_GUARD):
                if not _breaks(problems, when):
                    continue
                newer = [x for x in a_order[a_order.index(a) + 1:] if not _breaks(grid[x][t], when)]
                older = [x for x in a_order[: a_order.index(a)] if not _breaks(grid[x][t], when)]
                te_newer = [x for x in t_order[t_order.index(t) + 1:] if not _breaks(grid[a][x], when)]
                te_older = [x for x in t_order[: t_order.index(t)] if not _breaks(grid[a][x], when)]
                fixes[str(when)] = {"accelerate_min": newer[0] if newer else None,
                                    "accelerate_max": older[-1] if older else None,
                                    "te_min": te_newer[0] if te_newer else None,
                                    "te_max": te_older[-1] if te_older else None}
            table.setdefault(a, {})[t] = {"problems": problems, "fixes": fixes}
    return table


def derive(root: Path = OBSERVATIONS) -> dict[str, Any]:
    tes = load("te", root)
    accs = load("accelerate_te", root)
    return {
        "source": "lab/observations/te and lab/observations/accelerate_te, derived by lab/te/derive.py",
        "te_releases": {v: te_release(t) for v, t in tes.items() if t["status"] == "ok"},
        "te_unobserved": {v: t["why"] for v, t in tes.items() if t["status"] != "ok"},
        "accelerate_releases": list(accs),
        "accelerate_te": accelerate_table(accs, tes),
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    KNOWLEDGE.parent.mkdir(parents=True, exist_ok=True)
    KNOWLEDGE.write_text(render(derive()))
    print("wrote", KNOWLEDGE.relative_to(HERE.parent.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
