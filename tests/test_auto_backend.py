"""The backend Accelerate picks itself for mixed_precision='fp8' when nothing names one (predict.auto_backends), held
against the lab's accelerator cells, and the LLaMA-Factory `fp8_backend` lint that follows it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from env_facts_helpers import LF_REFERENCE, cfg, make_facts

from fp8doctor.findings import Level
from fp8doctor.knowledge.predict import FSDP_PLUGIN_NONE, auto_backend, auto_backends, recipe_classes
from fp8doctor.rules import lint

OBSERVATIONS = Path(__file__).resolve().parent.parent / "lab" / "observations"


def _cells() -> list[dict[str, Any]]:
    cells = [json.loads(p.read_text()) for p in sorted(OBSERVATIONS.glob("acc1.*.json"))]
    return [c for c in cells if c["versions"].get("torchao")]


def _case(cell: dict[str, Any], **inputs: Any) -> dict[str, Any]:
    [case] = [c for c in cell["probes"]["accelerator"] if c["inputs"] == inputs]
    return case


def _auto_chose_ao(cell: dict[str, Any]) -> bool | None:
    """What Accelerator(mixed_precision='fp8') without a handler did with torchao installed: True when it converted
    with AO (1.8 raises on its AO-only `fsdp_plugin.cpu_ram_efficient_loading` check instead), False when it
    converted nothing, None when it raised before choosing."""
    case = _case(cell, env={}, handler=None, mp_arg="fp8")
    if case["outcome"] == "ok":
        return case["fp8_backend"] == "AO" and case["fp8_layers"] > 0
    return True if case["message"] == FSDP_PLUGIN_NONE else None


def test_auto_backend_is_what_each_observed_release_chose() -> None:
    seen = {}
    for cell in _cells():
        acc, chose_ao = cell["versions"]["accelerate"], _auto_chose_ao(cell)
        if chose_ao is None:
            assert "AORecipeKwargs" not in recipe_classes(acc) or acc.startswith("1.4."), acc
            continue
        seen[acc] = chose_ao
        assert (auto_backend(acc, torchao=True) == "AO") is chose_ao, acc
        assert (auto_backends(acc)[:1] == ("AO",)) is chose_ao, acc
    # 1.5-1.7 build an AORecipeKwargs and never apply it; 1.8 onwards apply it
    assert seen["1.6.0"] is False and seen["1.8.1"] is True and seen["1.16.0"] is True
    assert auto_backends("1.3.0") == () and auto_backend(None, torchao=True) is None


def test_ms_amp_is_tried_only_where_accelerate_still_has_it() -> None:
    for cell in _cells():
        acc = cell["versions"]["accelerate"]
        if not auto_backends(acc):
            continue
        has_msamp = _case(cell, env={}, handler="MSAMPRecipeKwargs", mp_arg="fp8")["outcome"] != "absent"
        assert ("MSAMP" in auto_backends(acc)) is has_msamp, acc
    assert auto_backends("1.15.0") == ("AO", "TE", "MSAMP") and auto_backends("1.16.0") == ("AO", "TE")


def test_torchao_wins_over_an_installed_te_and_te_over_ms_amp() -> None:
    assert auto_backend("1.15.0", torchao=True, te=True, msamp=True) == "AO"
    assert auto_backend("1.15.0", torchao=False, te=True, msamp=True) == "TE"
    assert auto_backend("1.15.0", torchao=False, msamp=True) == "MSAMP"
    assert auto_backend("1.16.0", torchao=False, msamp=True) is None


def test_fp8_backend_lint_follows_what_the_release_chose() -> None:
    auto = {**LF_REFERENCE, "fp8_backend": "auto", "bf16": False}
    for cell in _cells():
        acc, chose_ao = cell["versions"]["accelerate"], _auto_chose_ao(cell)
        if chose_ao is None:
            continue
        facts = make_facts(packages={"accelerate": acc}, configs=[cfg("llamafactory", auto)])
        found = lint.check_fp8_backend_auto(facts)
        assert bool(found) is chose_ao, acc
        if found:
            assert found[0].level is Level.WARN and f"accelerate {acc} tries it first" in found[0].detail


def test_fp8_backend_lint_on_the_llamafactory_cell() -> None:
    # LLaMA-Factory 0.9.5 with fp8_backend auto on accelerate 1.11: the lab saw torchao convert the model
    cell = json.loads((OBSERVATIONS / "lf0.9.5-tf4.57-ao.json").read_text())
    keys = {"bf16": False, "fp8": True, "fp8_backend": "auto"}
    [case] = [c for c in cell["probes"]["llamafactory"] if c["inputs"]["fp8_keys"] == keys and not c["inputs"]["env"]
              and c["inputs"]["launch"] == "cli"]
    assert case["fp8_backend"] == "AO" and case["fp8_layers"] > 0
    facts = make_facts(packages={k: cell["versions"][k] for k in ("accelerate", "transformers", "torchao")},
                       configs=[cfg("llamafactory", {**LF_REFERENCE, **keys})])
    [f] = lint.check_fp8_backend_auto(facts)
    assert "fp8_backend auto resolves to torchao" in f.title
