"""Backend rules: is any FP8 backend usable (torchao, Transformer Engine, MS-AMP), and does TE import."""

from __future__ import annotations

from typing import Any

from packaging.version import Version

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.capability import TE_INSTALL, accelerate_has_recipe, backend_available
from fp8doctor.knowledge.fixes import upgrade_line
from fp8doctor.knowledge.generations import first_accelerate
from fp8doctor.rules.common import intent, intent_text, pkg, requested_backends, truthy


def _te(facts: dict[str, Any]) -> tuple[bool, str]:
    installed = {"transformer-engine": pkg(facts, "transformer-engine") or pkg(facts, "transformer-engine-torch")}
    te = facts.get("te_import", {})
    return backend_available("te", installed, te.get("error") if te.get("ok") is False else None)


def check_any_backend(facts: dict[str, Any]) -> Finding:
    usable, unusable = [], []
    if backend_available("torchao", facts.get("packages", {}))[0]:
        has_recipe, why = accelerate_has_recipe("torchao", pkg(facts, "accelerate"))
        if has_recipe:
            usable.append(f"torchao {pkg(facts, 'torchao')}")
        else:
            unusable.append(f"torchao {pkg(facts, 'torchao')} is installed, but {why}")
    if _te(facts)[0]:
        te_version = pkg(facts, "transformer-engine") or pkg(facts, "transformer-engine-torch")
        usable.append(f"Transformer Engine {te_version}")
    if pkg(facts, "msamp"):
        usable.append(f"MS-AMP {pkg(facts, 'msamp')}")
    if usable:
        return Finding("backend.any", Level.OK, "Usable FP8 backend: " + ", ".join(usable), " ".join(unusable))
    signs = intent(facts)
    return Finding(
        "backend.none", Level.FAIL if signs else Level.WARN,
        "No FP8 backend this accelerate can use" if unusable else "No FP8 backend is installed",
        (intent_text(signs) + "; " if signs else "")
        + "Accelerate needs torchao, Transformer Engine or MS-AMP for fp8." + "".join(f" {u}" for u in unusable),
        (f"{upgrade_line(minimum=first_accelerate('AORecipeKwargs'))}   # or, on a CUDA machine: {TE_INSTALL}"
         if unusable else f"pip install torchao   # or, on a CUDA machine: {TE_INSTALL}"),
    )


def check_transformer_engine(facts: dict[str, Any]) -> Finding:
    ok, reason = _te(facts)
    te = facts.get("te_import", {})
    wanted = requested_backends(facts).get("TE")
    if not ok and not (pkg(facts, "transformer-engine") or pkg(facts, "transformer-engine-torch")):
        if wanted:
            return Finding("backend.te-missing", Level.FAIL, f"Transformer Engine is requested ({wanted}) but not "
                           "installed", reason,
                           f"{TE_INSTALL}   # on a CUDA machine, or "
                           "switch the backend to AO (torchao)")
        return Finding("backend.te", Level.SKIP, "Transformer Engine: not installed", reason,
                       f"Only needed for fp8_backend te; on a CUDA machine: {TE_INSTALL}")
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


def _te_version(facts: dict[str, Any]) -> str | None:
    return pkg(facts, "transformer-engine") or pkg(facts, "transformer-engine-torch")


def _best_cc(facts: dict[str, Any]) -> tuple[int, int] | None:
    ccs = [tuple(g["cc"]) for g in facts.get("gpu", {}).get("visible", []) if g.get("cc")]
    return max(ccs) if ccs else None  # type: ignore[return-value]


def _torch_cuda(facts: dict[str, Any]) -> float | None:
    try:
        return float(facts.get("torch_build", {}).get("cuda") or "")
    except ValueError:
        return None


def check_te_release(facts: dict[str, Any]) -> Finding:
    """Which TE recipes the installed release has and whether each runs here, in TE's own words (static TE lab);
    without TE, which release each recipe needs."""
    from fp8doctor.knowledge import te_releases
    from fp8doctor.knowledge.capability import RECIPE_CLASSES, offered_recipes, te_recipe_supported

    version = _te_version(facts)
    needs = {r: te_releases.first_release_with_recipe(cls) for r, (cls, _) in RECIPE_CLASSES.items()}
    oldest = te_releases.releases()[0]
    if not version:
        detail = "; ".join(f"{r} needs TE >= {v}" if v != oldest else f"{r}: any TE (>= {oldest} observed)"
                           for r, v in needs.items())
        unread = ", ".join(te_releases.data()["te_unobserved"])
        return Finding("backend.te-recipes", Level.SKIP, "Transformer Engine recipes by release (TE not installed)",
                       detail + f". Read from each release's source (TE {unread} has no wheel to read).")
    observed = te_releases.release_for(version)
    if observed is None:
        return Finding("backend.te-recipes", Level.WARN, f"Transformer Engine {version} is older than any release "
                       f"fp8doctor has read ({oldest})", "Its recipes and conditions are unknown to the doctor.",
                       f"pip install 'transformer-engine[pytorch]>={oldest}'   # on a CUDA machine")
    info = te_releases.data()["te_releases"][observed]
    offered = offered_recipes(version)
    cc = _best_cc(facts)
    lines = []
    for r in offered:
        ok, why = te_recipe_supported(cc, r, version, cuda=_torch_cuda(facts))
        lines.append(f"{r}: {'yes' if ok else 'no'}, {why}")
    absent = [f"{r} (TE >= {needs[r]})" for r in RECIPE_CLASSES if r not in offered]
    if absent:
        lines.append("Not in this release: " + ", ".join(absent))
    lines.append(f"Autocast API: transformer_engine.pytorch.{info['autocast']}; availability: "
                 f"{info['availability_api']}; FP8GlobalStateManager in {info['state_manager']}")
    same = "" if observed == version else f" (as read from TE {observed})"
    return Finding("backend.te-recipes", Level.OK,
                   f"Transformer Engine {version} offers: {', '.join(offered)}{same}", "\n".join(lines))


def _mxfp8_requested(facts: dict[str, Any]) -> bool:
    env = facts.get("environ", {}).get("accelerate_fp8", {})
    fp8 = facts.get("accelerate_config", {}).get("data", {}).get("fp8_config") or {}
    return truthy(env.get("ACCELERATE_FP8_USE_MXFP8_BLOCK_SCALING", "")) or (
        isinstance(fp8, dict) and truthy(fp8.get("use_mxfp8_block_scaling", False)))


def _pair_fix(fix: dict[str, str | None]) -> str:
    if fix.get("accelerate_min"):
        return f"pip install 'accelerate>={fix['accelerate_min']}'"
    options = []
    if fix.get("te_min"):
        options.append(f"pip install 'transformer-engine[pytorch]>={fix['te_min']}'   # on a CUDA machine")
    if fix.get("accelerate_max"):
        options.append(f"pip install 'accelerate<={fix['accelerate_max']}'")
    if fix.get("te_max"):
        options.append(f"pip install 'transformer-engine[pytorch]<={fix['te_max']}'")
    return "\nor: ".join(options) or "No observed Accelerate or TE release avoids this."


def check_accelerate_te(facts: dict[str, Any]) -> Finding | None:
    """Names Accelerate's TE integration uses that the installed TE release lacks (static TE lab tables)."""
    from fp8doctor.knowledge import te_releases

    acc, te = pkg(facts, "accelerate"), _te_version(facts)
    if not acc or not te:
        return None
    pair = te_releases.accelerate_te(acc, te)
    if pair is None:
        return None
    seen = f"accelerate {acc} with TE {te}"
    mapped = (f" (as observed for accelerate {pair['accelerate']} and TE {pair['te']})"
              if (pair["accelerate"], pair["te"]) != (acc, te) else "")
    mx = _mxfp8_requested(facts)
    breaking = [p for p in pair["problems"] if p["kind"] in te_releases.BREAKING]
    blocking = [p for p in breaking if p["when"] is None or (p["when"] == te_releases.MXFP8_OPTION and mx)]
    later = [p for p in breaking if p["when"] == te_releases.MXFP8_OPTION and not mx]
    deprecated = [p for p in pair["problems"] if p["kind"] == "deprecated"]

    def say(p: dict[str, Any]) -> str:
        if p["kind"] == "not-loaded":
            return (f"`{p['name']}` (used by {p['where']}) is a submodule that `import transformer_engine.pytorch` "
                    f"no longer imports in TE {pair['te']}: AttributeError unless something imported it first")
        what = {"missing": "is not in", "argument": "is not accepted by", "unverified": "could not be checked in"}
        return f"`{p['name']}` (used by {p['where']}) {what[p['kind']]} TE {pair['te']}"

    if blocking:
        when = te_releases.MXFP8_OPTION if all(p["when"] for p in blocking) else "None"
        return Finding("versions.accelerate-te-api", Level.FAIL, f"{seen}: Accelerate uses TE names this TE lacks",
                       "\n".join(say(p) for p in blocking) + f"{mapped}. Accelerate's TE path fails at prepare().",
                       _pair_fix(pair["fixes"].get(when, {})))
    if later:
        return Finding("versions.accelerate-te-api", Level.WARN,
                       f"{seen}: MXFP8 through Accelerate would fail", "\n".join(say(p) for p in later)
                       + f"{mapped}; only reached with use_mxfp8_block_scaling.",
                       _pair_fix(pair["fixes"].get(te_releases.MXFP8_OPTION, {})))
    detail = [f"Every TE name Accelerate's TE integration uses exists in TE {pair['te']}{mapped}."]
    detail += [f"`{p['name']}` is deprecated in TE {pair['te']}: \"{p['message']}\"" for p in deprecated]
    newer = [a for a in te_releases.accelerate_releases() if Version(a) > Version(pair["accelerate"])
             and any(p["kind"] in te_releases.BREAKING and p["when"] is None
                     for p in (te_releases.accelerate_te(a, te) or {}).get("problems", []))]
    if newer:
        detail.append(f"Upgrading accelerate to {newer[0]} or later breaks with this TE; upgrade TE with it.")
    return Finding("versions.accelerate-te-api", Level.OK, f"{seen}: compatible", "\n".join(detail))
