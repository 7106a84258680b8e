"""Which cells a matrix runs: backend x recipe x entry path, plus a bf16 baseline per entry path and seed.

Cells this machine cannot run carry the doctor's reason and are never spawned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fp8doctor.runs.machine import skip_reasons
from fp8doctor.runs.spec import BASELINE_RECIPE, ENTRIES, SIZES, TE_RECIPES, TORCHAO_RECIPES, RunSpec
from fp8doctor.system.errors import UsageError

RECIPES = {"torchao": TORCHAO_RECIPES, "te": TE_RECIPES}
FP8_BACKENDS = ("te", "torchao")
DEFAULT_STEPS = 8
DEFAULT_SIZE = "tiny"
NPROC = {"multiproc": 2, "fsdp2": 2, "deepspeed": 2}
# The compile axis: entries whose model fp8doctor itself compiles after preparation (runs/entries/common.compiled).
COMPILE_ENTRIES = ("native", "accelerator", "launch", "multiproc", "fsdp2", "deepspeed")
COMPILE_SKIP = ("the Trainer compiles through TrainingArguments(torch_compile=True), which the trainer entry does "
                "not set; the compile axis covers the entries that prepare the model themselves")


@dataclass
class Cell:
    spec: RunSpec
    role: str  # "baseline" | "fp8"
    skip: str | None = None
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = self.spec.key()


def baseline_spec(spec: RunSpec) -> RunSpec:
    """The bf16 run an FP8 cell is compared with: same entry path, seed, steps, size and process count."""
    return replace(spec, backend="none", recipe=BASELINE_RECIPE, mixed_precision="bf16", env={}, bf16=False,
                   numerics_every=0)


def native_spec(spec: RunSpec) -> RunSpec:
    return replace(spec, entry="native", nproc=1)


def skip_reason(spec: RunSpec, facts: dict[str, Any]) -> str | None:
    """Everything this machine lacks for the cell, or None when it can run (fp8doctor.runs.machine decides)."""
    reasons = skip_reasons(spec, facts)
    if spec.compile and spec.entry not in COMPILE_ENTRIES:
        reasons.append(COMPILE_SKIP)
    return " ".join(reasons) or None


def _pick(given: Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    if not given:
        return list(allowed)
    bad = [g for g in given if g not in allowed]
    if bad:
        raise UsageError(f"unknown {what} {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(given))


def plan(
    facts: dict[str, Any],
    backends: Sequence[str] | None = None,
    recipes: Sequence[str] | None = None,
    entries: Sequence[str] | None = None,
    steps: int = DEFAULT_STEPS,
    size: str = DEFAULT_SIZE,
    seeds: Sequence[int] = (0,),
    timeout_s: float = 300.0,
    compile_axis: bool = False,
    numerics_every: int = 0,
) -> list[Cell]:
    """Baselines first, then FP8 cells, each with its skip reason (None: it will run). `compile_axis` adds each
    cell again under torch.compile (its baseline compiled too); `numerics_every` K > 0 samples each FP8 cell's
    torchao layers every K forward calls (not part of a cell's key: the sampler changes no computation)."""
    backends = _pick(backends, FP8_BACKENDS, "backend")
    all_recipes = [r for b in backends for r in RECIPES[b]]
    recipes = _pick(recipes, all_recipes, "recipe for the chosen backends")
    entries = _pick(entries, ENTRIES, "entry")
    if size not in SIZES:
        raise UsageError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    if steps < 2:
        raise UsageError("--steps must be at least 2 (the loss-falls check compares first and last steps)")
    fp8: list[Cell] = []
    for seed in seeds:
        for backend in backends:
            for recipe in (r for r in RECIPES[backend] if r in recipes):
                for entry in entries:
                    for compiled in (False, True) if compile_axis else (False,):
                        spec = RunSpec(backend=backend, recipe=recipe, entry=entry, mixed_precision="fp8",
                                       steps=steps, seed=seed, nproc=NPROC.get(entry, 1), size=size,
                                       timeout_s=timeout_s, compile=compiled, numerics_every=numerics_every)
                        fp8.append(Cell(spec, "fp8", skip_reason(spec, facts)))
    baselines: dict[str, Cell] = {}
    for cell in fp8:
        base = baseline_spec(cell.spec)
        if base.key() not in baselines:
            baselines[base.key()] = Cell(base, "baseline", skip_reason(base, facts))
    runnable = {baseline_spec(c.spec).key() for c in fp8 if c.skip is None}
    for key, cell in baselines.items():
        if cell.skip is None and key not in runnable:
            cell.skip = "no FP8 cell on this entry path can run here, so its bf16 baseline is not needed"
    return list(baselines.values()) + fp8


def plan_union(facts: dict[str, Any], selections: Sequence[dict[str, Any]], **common: Any) -> list[Cell]:
    """Several rectangular selections (each plan()'s keyword arguments) as one matrix: cells deduplicated by key,
    baselines first."""
    cells: dict[str, Cell] = {}
    for sel in selections:
        for cell in plan(facts, **{**common, **sel}):
            cells.setdefault(cell.key, cell)
    ordered = sorted(cells.values(), key=lambda c: c.role != "baseline")
    runnable = {baseline_spec(c.spec).key() for c in ordered if c.role == "fp8" and c.skip is None}
    for c in ordered:  # a baseline one selection did not need may be needed by another
        if c.role == "baseline" and c.key in runnable and c.skip and "baseline is not needed" in c.skip:
            c.skip = None
    return ordered
