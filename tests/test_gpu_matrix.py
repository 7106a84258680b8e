"""The matrix as a regression suite: every cell a parametrized test, the matrix's checks as asserts.

CPU: the torchao cells run emulated (one shared `fp8doctor matrix` run, see conftest.cpu_matrix).
GPU (`pytest -m gpu [-n N]`): every cell runs on the GPU of its xdist worker; marks skip what the machine lacks.
The sharded entries (fsdp2, deepspeed) are GPU cells too, for torchao and TE (`multigpu`: 2 GPUs); on CPU the
fsdp2 entry is run by tests/test_sharded_entries.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CPU_MATRIX_ENTRIES

from fp8doctor.findings import Level
from fp8doctor.knowledge.capability import FAMILY_MIN_CC, te_recipe_family
from fp8doctor.matrix import checks
from fp8doctor.matrix.plan import NPROC, baseline_spec, native_spec, skip_reason
from fp8doctor.runs.spec import ENTRIES, TE_RECIPES, TORCHAO_RECIPES, RunSpec

STEPS = 8


def _failures(verdicts: list[checks.Verdict]) -> list[str]:
    return [f"{v.check}: {v.detail}" for v in verdicts if v.level in (Level.FAIL, Level.ERROR)]


@pytest.mark.parametrize("entry", CPU_MATRIX_ENTRIES)
@pytest.mark.parametrize("recipe", TORCHAO_RECIPES)
def test_torchao_cell_on_cpu(cpu_matrix: dict[str, Any], recipe: str, entry: str) -> None:
    assert cpu_matrix["json"] is not None, cpu_matrix["stderr"]
    cells = [c for c in cpu_matrix["json"]["cells"] if c["role"] == "fp8"
             and c["result"]["spec"]["backend"] == "torchao" and c["result"]["spec"]["recipe"] == recipe
             and c["result"]["spec"]["entry"] == entry]
    assert len(cells) == 1
    cell = cells[0]
    if cell["status"] == "skip":  # only a known CPU limit, measured by running the cell, may skip here
        assert cell["verdicts"][0]["detail"].startswith("known CPU limit: "), cell["verdicts"]
        pytest.skip(cell["verdicts"][0]["detail"])
    assert cell["result"]["outcome"] == "finished", cell["result"].get("error")
    assert cell["result"]["emulated"] is True
    # A failure only where the run measured FP8 weights outside the optimizer (the `optimizer` check, which
    # test_matrix_cli holds against the parameters), with the divergence that follows from them as a warning.
    frozen = bool(cell["result"].get("outside_optimizer"))
    bad = [v["check"] for v in cell["verdicts"] if v["level"] in ("fail", "error")]
    assert bad == (["optimizer"] if frozen else []), bad
    warned = [v["check"] for v in cell["verdicts"] if v["level"] == "warn"]
    allowed = {"native_agreement"} | ({"divergence"} if frozen else set())
    status = "fail" if bad else "warn" if warned else "pass"
    assert cell["status"] == status and set(warned) <= allowed, warned
    checked = {v["check"] for v in cell["verdicts"] if v["level"] == "ok"}
    assert {"finished", "loss_finite", "loss_falls", "loss_vs_bf16", "fp8_layers", "fp8_active"} <= checked


def _gpu_params() -> list[Any]:
    out = []
    for backend, recipes in (("torchao", TORCHAO_RECIPES), ("te", TE_RECIPES)):
        for recipe in recipes:
            family = te_recipe_family(recipe) if backend == "te" else "per-tensor"
            for entry in ENTRIES:
                marks = [pytest.mark.gpu(min_cc=FAMILY_MIN_CC[family])]
                if backend == "te":
                    marks.append(pytest.mark.te)
                if NPROC.get(entry, 1) > 1:
                    marks.append(pytest.mark.multigpu)
                out.append(pytest.param(backend, recipe, entry, marks=marks, id=f"{backend}-{recipe}-{entry}"))
    return out




@pytest.mark.parametrize(("backend", "recipe", "entry"), _gpu_params())
def test_cell_on_gpu(fp8_cell: Any, backend: str, recipe: str, entry: str) -> None:
    from fp8doctor.runs.machine import snapshot

    spec = RunSpec(backend=backend, recipe=recipe, entry=entry, steps=STEPS, nproc=NPROC.get(entry, 1))
    why = skip_reason(spec, snapshot())
    if why:
        pytest.skip(why)
    # Baselines and native cells are shared by the tests of one worker (the fixture itself is per test).
    run = _shared_runner(fp8_cell)
    result = fp8_cell(spec)
    base = run(baseline_spec(spec))
    native = run(native_spec(spec)) if entry in checks.AGREEMENT_ENTRIES else None
    verdicts = checks.check_cell(result, base, native)
    assert not _failures(verdicts), _failures(verdicts)
    assert result["device"].startswith("cuda"), result["device"]


_RESULTS: dict[str, dict[str, Any]] = {}


def _shared_runner(fp8_cell: Any) -> Any:
    def run(spec: RunSpec) -> dict[str, Any]:
        if spec.key() not in _RESULTS:
            _RESULTS[spec.key()] = fp8_cell(spec)
        return _RESULTS[spec.key()]

    return run
