"""What a finished repro means: the verdict paragraph (reproduced? which fix reached fp8-active?) and the
settings of the fixed paths that worked here."""

from __future__ import annotations

from fp8doctor.facts.packages import version_of
from fp8doctor.knowledge.command_forms import parse
from fp8doctor.knowledge.fixes import Fix, launch_fix, render, render_all
from fp8doctor.repro.plan import recipe_class
from fp8doctor.repro.run import ReproReport
from fp8doctor.verdicts import NOT_APPLICABLE, REPRODUCED, SILENT_BF16


def verdict_paragraph(report: ReproReport) -> str:
    rows = {r.key: r for r in report.rows}
    plan = report.plan
    recipe_cls = recipe_class(plan.backend)
    parts: list[str] = []
    if report.environment:  # the runs it stopped say nothing about the FP8 libraries
        parts.append(f"ENVIRONMENT PROBLEM, not an FP8 result: {report.environment} `fp8doctor env` shows the fix; "
                     "run repro again once it is fixed.")
    skipped = {k for k, r in rows.items() if report.environment and r.verdict == NOT_APPLICABLE}
    append = rows["buggy_append"]
    if append.verdict == REPRODUCED:
        err = (append.result or {}).get("error") or {}
        parts.append(f"REPRODUCED: with `bf16: true` the Trainer builds `Accelerator(mixed_precision='bf16')`; "
                     f"injecting an FP8 recipe handler ({recipe_cls}) into it raises ValueError "
                     f"\"{err.get('message')}\" at {err.get('where')} (called from {err.get('user_where')}).")
    elif "buggy_append" not in skipped:
        parts.append(f"NOT reproduced: the always-append patch gave {append.verdict} ({append.reason}).")
    missing = rows["buggy_if_missing"]
    patch = (missing.result or {}).get("patch") or {}
    if missing.verdict == SILENT_BF16:
        seen = ", ".join(patch.get("kwargs_handlers_seen") or []) or "some"
        parts.append(f"The report's own patch (inject only if `kwargs_handlers` is missing) injected "
                     f"{patch.get('injected', 0)} recipe(s): this transformers always passes kwargs_handlers "
                     f"({seen}), so the run trained silently in bf16 ({missing.reason}).")
    elif "buggy_if_missing" not in skipped:
        parts.append(f"The inject-if-missing patch gave {missing.verdict} ({missing.reason}).")
    yours = [r for r in report.rows if r.kind == "yours"]
    if yours:
        parts.append("Your config: " + "; ".join(f"{r.label} -> {r.verdict}" for r in yours) + ".")
    if any("_prepare_ao" in str(((r.result or {}).get("error") or {}).get("where")) for r in report.rows):
        parts.append("A leftover ACCELERATE_FP8_BACKEND next to a non-fp8 mixed precision sends Accelerate's "
                     "prepare() down the FP8 backend's path without a recipe (the AttributeError in _prepare_ao): "
                     "set mixed precision to fp8, or unset ACCELERATE_FP8_BACKEND when training in bf16.")
    active = report.fixed_active()
    if active:
        names = ", ".join(r.key for r in active)
        parts.append(f"Fixed paths with FP8 really active here: {names}.")
    elif report.environment:
        parts.append("No fixed path could run in this environment.")
    else:
        parts.append("No fixed path reached fp8-active on this machine: see the reasons below.")
    parts.extend(plan.notes)
    return " ".join(parts)


def fixes(report: ReproReport) -> list[Fix]:
    """The fixed paths that reached fp8-active here, as fixes (fp8doctor/knowledge/fixes.py renders them)."""
    plan = report.plan
    active = {r.key: r for r in report.fixed_active()}
    backend = "TE" if plan.backend == "te" else "AO"
    handler = {"TERecipeKwargs": "TERecipeKwargs(fp8_format='HYBRID')",
               "AORecipeKwargs": f"AORecipeKwargs(config=Float8LinearConfig.from_recipe_name('{plan.recipe}'))",
               "FP8RecipeKwargs": "FP8RecipeKwargs(backend='TE', fp8_format='HYBRID')"}[recipe_class(plan.backend)]
    out: list[Fix] = []
    if "trainer" in active:
        out.append(Fix("trainer", "HF Trainer / LLaMA-Factory: let Accelerate own FP8, do not patch "
                       "Accelerator.__init__", backend, env=dict(active["trainer"].spec.env),
                       edits={"your training config": {"bf16": False}},
                       note="bf16: true overrides fp8 in TrainingArguments"))
    if "launch" in active:
        fix = launch_fix(backend, parse(None), version_of("accelerate"))
        if fix is not None:
            out.append(fix)
    if "accelerator" in active:
        out.append(Fix("accelerator", "your own Accelerator", backend,
                       note=f"Accelerator(mixed_precision='fp8', kwargs_handlers=[{handler}])"))
    return out


def fix_lines(report: ReproReport) -> list[str]:
    """Concrete settings of the fixed paths that reached fp8-active here."""
    active = report.fixed_active()
    lines = render_all(fixes(report)).splitlines() if active else []
    if active and report.plan.backend == "torchao" and any((r.result or {}).get("emulated") for r in active):
        lines.append("# (on this CPU the runs used torchao emulate=True; on an FP8 GPU the same settings run "
                     "real FP8 matmuls)")
    return lines


EMULATED_NOTE = ("On this CPU the runs used torchao emulate=True; on an FP8 GPU the same settings run real FP8 "
                 "matmuls.")


def emulated_note(report: ReproReport) -> str | None:
    active = report.fixed_active()
    if active and report.plan.backend == "torchao" and any((r.result or {}).get("emulated") for r in active):
        return EMULATED_NOTE
    return None


def fix_blocks(report: ReproReport) -> list[dict[str, str | list[str]]]:
    """Each fix that worked here on its own, to be shown as one numbered, pasteable block: {title, lang, lines}.
    A fix that is only a line of code for the user's own script (the Accelerator call) is a Python block."""
    blocks: list[dict[str, str | list[str]]] = []
    for fix in fixes(report) if report.fixed_active() else []:
        code_only = not (fix.install or fix.env or fix.files or fix.edits or fix.command)
        if code_only:
            blocks.append({"title": fix.title, "lang": "python", "lines": fix.note.splitlines()})
        else:
            blocks.append({"title": fix.title, "lang": "bash", "lines": render(fix)[1:]})
    return blocks
