"""The doctor's Transformer Engine paths held against each TE release's own source (static TE lab, lab/te).

Everything here reads the committed observations (lab/observations/te, lab/observations/accelerate_te); no network,
no TE. Test ids name the release. Where a test evaluates TE's conditions it evaluates TE's own condition text
(recorded verbatim from the release's source) with the machine's values, independently of the doctor's rules.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from env_facts_helpers import make_facts
from packaging.requirements import Requirement
from packaging.version import Version

import fp8doctor.numerics
import fp8doctor.observe
import fp8doctor.runs.backends.te as te_backend
from fp8doctor.facts.packages import TE_IMPORT_PROBE
from fp8doctor.findings import Level
from fp8doctor.knowledge.capability import (
    RECIPE_CLASSES,
    fp8_family_supported,
    offered_recipes,
    te_recipe_family,
    te_recipe_supported,
)
from fp8doctor.knowledge.generations import accelerate_generation
from fp8doctor.rules import backends, versions
from fp8doctor.runs.machine import skip_reason
from fp8doctor.runs.spec import TE_RECIPES, RunSpec

ROOT = Path(__file__).resolve().parents[1]
OBS = ROOT / "lab" / "observations"


def _load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"te_lab_{name}", ROOT / "lab" / "te" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


astscan = _load("astscan")
derive = _load("derive")


def _observations(kind: str) -> dict[str, dict[str, Any]]:
    files = sorted((OBS / kind).glob("*.json"), key=lambda p: Version(p.stem))
    return {p.stem: json.loads(p.read_text()) for p in files}


TE_OBS = _observations("te")
TE_READ = [v for v, o in TE_OBS.items() if o["status"] == "ok"]
ACC_OBS = _observations("accelerate_te")
# The TE releases the doctor claims to support: its own `te` extra in pyproject.toml.
_TE_EXTRA = re.search(r'^te = \[\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
assert _TE_EXTRA, "pyproject.toml has no `te` extra"
CLAIMED = Requirement(_TE_EXTRA.group(1)).specifier
TE_CLAIMED = [v for v in TE_READ if Version(v) in CLAIMED]
CCS = [(7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (10, 3), (11, 0), (12, 0), (12, 1), (13, 0)]
CUDAS = [None, 11.8, 12.0, 12.4, 12.8, 12.9, 13.0]


def test_lab_covers_the_releases_the_issue_asks_for() -> None:
    minors = {Version(v).release[:2] for v in TE_READ}
    assert {(1, 11), (1, 13), (2, 3), (2, 6), (2, 8), (2, 9)} <= minors
    assert minors & {(2, 0), (2, 1), (2, 2)}
    assert len(TE_READ) >= 8
    assert any(o["status"] == "no-wheel" for o in TE_OBS.values()), "a release without a wheel is recorded"
    assert {"1.1.1", "1.3.0", "1.4.0", "1.7.0", "1.8.1", "1.9.0", "1.11.0", "1.12.0", "1.15.0"} <= set(ACC_OBS)


def test_knowledge_is_derived_from_the_observations() -> None:
    assert derive.render(derive.derive(OBS)) == (ROOT / "fp8doctor" / "knowledge" / "te_releases.json").read_text()


# --- names the doctor uses ----------------------------------------------------------------------------------------


def _hasattr_guards_hold(guards: list[str], te: dict[str, Any], aliases: dict[str, str]) -> bool:
    """Whether `hasattr(alias, "name")` guards (and their negations) hold in this release; other guards: reachable."""
    for g in guards:
        neg = g.startswith("not (")
        expr = ast.parse(g[5:-1] if neg else g, mode="eval").body
        if not (isinstance(expr, ast.Call) and ast.unparse(expr.func) == "hasattr"):
            continue
        module = aliases[expr.args[0].id]  # type: ignore[attr-defined]
        has = bool(derive._exists(te, module, expr.args[1].value, "attribute"))  # type: ignore[attr-defined]
        if has == neg:
            return False
    return True


def _check_uses(source: str, te: dict[str, Any]) -> list[str]:
    found = astscan.te_uses(source)
    aliases = {"te": "transformer_engine.pytorch", "te_recipes": "transformer_engine.common.recipe"}
    errors = []
    for use in found["uses"]:
        if use["how"] == "hasattr" or not _hasattr_guards_hold(use["guards"], te, aliases):
            continue
        if not derive._exists(te, use["module"], use["name"], use["how"]):
            errors.append(f"{use['module']}.{use['name']} ({use['how']} in {use['function']})")
    for call in found["calls"]:
        if not _hasattr_guards_hold(call["guards"], te, aliases):
            continue
        params = derive._params(te, call["name"])
        if params is None or any(p.startswith("**") for p in params):
            continue
        errors += [f"{call['name']}({kw}=...)" for kw in call["keywords"] if kw not in params]
    return errors


@pytest.mark.parametrize("release", TE_CLAIMED)
def test_te_backend_uses_only_names_this_release_has(release: str) -> None:
    te = TE_OBS[release]
    assert _check_uses(Path(te_backend.__file__).read_text(), te) == []
    for recipe in offered_recipes(release):
        cls, kwargs = RECIPE_CLASSES[recipe]
        assert set(kwargs) <= set(te["recipes"][cls]["fields"]), (recipe, cls)
        if "fp8_format" in kwargs:
            assert kwargs["fp8_format"] in te["formats"]


@pytest.mark.parametrize("release", TE_READ)
def test_env_probe_and_observer_use_names_this_release_has(release: str) -> None:
    """The TE import probe of `env` and the FP8 observer must work on every read release, 1.x included."""
    te = TE_OBS[release]
    assert _check_uses(TE_IMPORT_PROBE, te) == []
    for _pkg, name in sorted(fp8doctor.observe._FP8_CLASSES):
        if _pkg.startswith("transformer_engine"):
            assert any(m.startswith(_pkg) for m in te["defined_in"].get(name, [])), name
    tree = ast.parse(Path(fp8doctor.observe.__file__).read_text())
    state_modules = {e.value for t in ast.walk(tree) if isinstance(t, ast.Tuple) for e in t.elts
                     if isinstance(e, ast.Constant) and str(e.value).startswith("transformer_engine.pytorch.")}
    assert any("FP8GlobalStateManager" in te["modules"].get(m, {}).get("names", []) for m in state_modules)


@pytest.mark.parametrize("release", TE_READ)
def test_numerics_sampler_reads_what_this_release_s_linear_has(release: str) -> None:
    """`watch --numerics` samples TE's module `Linear` (not `te.ops.Linear`) through attributes its __init__ sets."""
    te = TE_OBS[release]
    assert fp8doctor.numerics._te_linear_modules() == {te["defined_in"]["Linear"][0]}
    assert set(fp8doctor.numerics.TE_LINEAR_ATTRIBUTES) <= set(te["init_attributes"]["Linear"])


@pytest.mark.parametrize("release", TE_READ)
def test_recipe_list_is_the_one_this_release_has(release: str) -> None:
    has = set(TE_OBS[release]["recipes"])
    expected = tuple(r for r in TE_RECIPES if RECIPE_CLASSES[r][0] in has)
    assert offered_recipes(release) == expected
    finding = backends.check_te_release(make_facts(packages={"transformer-engine": release}))
    assert finding.title.endswith("offers: " + ", ".join(expected))
    # The matrix: a TE cell whose recipe the installed release lacks is skipped, naming the release.
    facts = {"installed": {"transformer-engine": release}, "te_import_error": None, "cc": (10, 0), "gpu_count": 1}
    for recipe in TE_RECIPES:
        why = skip_reason(RunSpec(backend="te", recipe=recipe, entry="native"), facts)
        if recipe not in expected:
            assert why and f"Transformer Engine {release} has no" in why
        else:
            assert why is None or f"Transformer Engine {release} has no" not in why


# --- capability verdicts against TE's own conditions ------------------------------------------------------------


def _te_says(te: dict[str, Any], family: str, cc: tuple[int, int], cuda: float | None) -> tuple[bool, str] | None:
    """Run the release's own decision list: its condition text evaluated with this machine's values."""
    funcs = {k.split(".")[-1]: a for k, a in te["availability"].items() if ".FP8GlobalStateManager." not in k}
    name = derive.FAMILY_FUNCTIONS[family]
    if name not in funcs:
        return None
    fn = funcs[name]
    while not any("ok" in d for d in fn["decisions"]):
        fn = funcs[next(c for c in fn["calls"] if c in funcs)]
    ns = {"get_device_compute_capability": lambda: cc, "float": float,
          "tex": types.SimpleNamespace(get_cublasLt_version=lambda: 10**9),
          "torch": types.SimpleNamespace(version=types.SimpleNamespace(cuda=str(cuda if cuda else 10**6)))}
    for d in fn["decisions"]:
        if all(eval(c, ns) for c in d["if"]):  # noqa: S307 - TE's own condition text, recorded by the lab
            return d["ok"], d["reason"]
    raise AssertionError("no decision matched")


@pytest.mark.parametrize("release", TE_READ)
def test_capability_verdicts_match_this_release_s_conditions(release: str) -> None:
    te = TE_OBS[release]
    checked = 0
    for recipe in offered_recipes(release):
        family = te_recipe_family(recipe)
        for cc in CCS:
            for cuda in CUDAS:
                said = _te_says(te, family, cc, cuda)
                ok, why = te_recipe_supported(cc, recipe, release, cuda=cuda)
                if said is None:
                    continue
                checked += 1
                assert ok is said[0], (recipe, cc, cuda, why, said)
                if not ok:
                    assert said[1] in why  # TE's reason, verbatim
    assert checked


@pytest.mark.parametrize("family", sorted(derive.FAMILY_FUNCTIONS))
def test_verdicts_without_te_match_the_newest_release(family: str) -> None:
    newest = TE_OBS[TE_READ[-1]]
    for cc in CCS:
        said = _te_says(newest, family, cc, None)
        assert said is not None
        assert fp8_family_supported(cc, family)[0] is said[0], (family, cc)


# --- Accelerate x TE ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("release", TE_READ)
def test_versions_rule_thresholds_match_removed_recipe_fields(release: str) -> None:
    """fp8doctor.rules.versions knows when DelayedScaling lost `interval` and `override_linear_precision`."""
    fields = TE_OBS[release]["recipes"]["DelayedScaling"]["fields"]
    facts = make_facts(packages={"transformer-engine": release},
                       env={"ACCELERATE_FP8_INTERVAL": "2", "ACCELERATE_FP8_OVERRIDE_FPROP": "true"})
    f = versions.check_accelerate_te_options(facts)
    text = f.detail if f else ""
    assert ("`interval`" in text) is ("interval" not in fields)
    assert ("`override_linear_precision`" in text) is ("override_linear_precision" not in fields)


@pytest.mark.parametrize("release", list(ACC_OBS))
def test_mxfp8_option_matches_accelerate_source(release: str) -> None:
    handler = ACC_OBS[release]["recipe_handler"]
    assert bool(accelerate_generation(release)["mxfp8_block_scaling_option"]) is (
        "use_mxfp8_block_scaling" in handler["fields"])


def _uses_fp8_check_mxfp8(acc: dict[str, Any]) -> str | None:
    """How accelerate's own source reaches check_mxfp8_support: 'import', 'attribute', or None."""
    for use in acc["files"]["accelerate/utils/transformer_engine.py"]["uses"]:
        if use["module"] == "transformer_engine.pytorch.fp8" and use["name"] == "check_mxfp8_support":
            return use["how"]
    return None


@pytest.mark.parametrize("release", list(ACC_OBS))
def test_env_flags_accelerate_with_te_1x(release: str) -> None:
    """TE 1.13 has no fp8.check_mxfp8_support: Accelerate releases whose source calls it fail there."""
    assert "check_mxfp8_support" not in TE_OBS["1.13.0"]["modules"]["transformer_engine.pytorch.fp8"]["names"]
    f = backends.check_accelerate_te(make_facts(packages={"accelerate": release, "transformer-engine": "1.13.0"}))
    calls_it = _uses_fp8_check_mxfp8(ACC_OBS[release]) is not None
    assert (f.level is Level.FAIL) is calls_it, f
    if calls_it:
        assert "check_mxfp8_support" in f.detail and "transformer-engine[pytorch]>=2.1.0" in f.fix


@pytest.mark.parametrize("release", list(ACC_OBS))
def test_env_flags_accelerate_reaching_te_fp8_as_attribute(release: str) -> None:
    """TE 2.9+ no longer imports pytorch.fp8: `te.fp8.…` as an attribute fails; an explicit import works."""
    te = TE_OBS["2.9.0"]["modules"]["transformer_engine.pytorch"]
    assert "fp8" in te["submodules"] and "fp8" not in te["submodules_loaded_by_import"]
    f = backends.check_accelerate_te(make_facts(packages={"accelerate": release, "transformer-engine": "2.9.0"}))
    attribute = _uses_fp8_check_mxfp8(ACC_OBS[release]) == "attribute"
    assert (f.level is Level.FAIL) is attribute, f
    if attribute:
        fixed = [a for a in ACC_OBS
                 if Version(a) > Version(release) and _uses_fp8_check_mxfp8(ACC_OBS[a]) != "attribute"]
        assert f.fix == f"pip install 'accelerate>={fixed[0]}'"


def test_reference_report_pair_is_compatible_but_upgrading_accelerate_alone_breaks_it() -> None:
    """The reference report: accelerate 1.1.1 with TE 1.11.0."""
    f = backends.check_accelerate_te(make_facts(packages={"accelerate": "1.1.1", "transformer-engine": "1.11.0"}))
    assert f.level is Level.OK
    assert "Upgrading accelerate to 1.11.0 or later breaks with this TE" in f.detail


def test_without_te_env_says_which_release_each_recipe_needs() -> None:
    f = backends.check_te_release(make_facts())
    assert f.level is Level.SKIP
    for recipe, (cls, _) in RECIPE_CLASSES.items():
        first = next(v for v in TE_READ if cls in TE_OBS[v]["recipes"])
        assert (f"{recipe} needs TE >= {first}" in f.detail) or (first == TE_READ[0] and recipe in f.detail)
    assert backends.check_accelerate_te(make_facts()) is None


@pytest.mark.parametrize("release", TE_READ)
def test_env_shows_te_s_own_reason_for_this_release(release: str) -> None:
    """On a B200 (cc 10.0) with torch built for CUDA 12.8, each recipe's line carries TE's verdict and words."""
    b200 = {"index": "0", "name": "NVIDIA B200", "cc": [10, 0], "memory_mib": 183359, "driver": "570.0"}
    f = backends.check_te_release(make_facts(gpus=[b200], packages={"transformer-engine": release},
                                             torch_cuda="12.8"))
    lines = dict(line.split(": ", 1) for line in f.detail.splitlines() if line.split(":")[0] in TE_RECIPES)
    assert list(lines) == list(offered_recipes(release))
    for recipe, text in lines.items():
        said = _te_says(TE_OBS[release], te_recipe_family(recipe), (10, 0), 12.8)
        assert said is not None
        assert text.startswith("yes" if said[0] else "no"), (recipe, text)
        if not said[0]:
            assert said[1] in text
