"""Do the FP8 layers' weights stay in the optimizer? (knowledge/optimizer_params.py, observed per release)."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.command_forms import parse
from fp8doctor.knowledge.engine import Setup, Stack
from fp8doctor.knowledge.fixes import optimizer_fix, render
from fp8doctor.knowledge.intent import Intent, LaunchConfig, read_intent
from fp8doctor.knowledge.optimizer_params import ALL_GATHER, DEFAULT_ON_FROM, SENTENCE, predict_optimizer
from fp8doctor.rules.common import NO_INTENT

ID = "optimizer.fp8-weights"


def _launch(intent: Intent) -> LaunchConfig | None:
    """The launch config the user's start goes through: one that sets a mixed precision."""
    return intent.launch if intent.launch is not None and intent.launch.mixed_precision is not None else None


def user_start(facts: dict[str, Any], intent: Intent | None = None) -> tuple[Stack, Setup, bool]:
    """The installed stack and the user's start: through `accelerate launch` of the launch config when it sets a
    mixed precision (launched), else plainly with the shell's variables. `intent`: read_intent(facts), if read."""
    intent = intent if intent is not None else read_intent(facts)
    launched = _launch(intent) is not None
    return Stack.of(facts.get("packages", {})), intent.setup(launched=launched), launched


def check_fp8_weights_in_optimizer(facts: dict[str, Any]) -> list[Finding]:
    """The user's start (through `accelerate launch` of the launch config when there is one, else plainly with the
    shell's variables): does Accelerate's torchao config give the FP8 weights new Parameters after the optimizer
    was built?"""
    intent = read_intent(facts)
    if not intent.wanted:
        return [Finding(ID, Level.SKIP, "FP8 weights in the optimizer: FP8 not intended", NO_INTENT)]
    stack, setup, launched = user_start(facts, intent)
    got = predict_optimizer(stack, setup)
    versions = f"accelerate {stack.accelerate}, torchao {stack.torchao}"
    if got["outcome"] == "unobserved":
        return [Finding(ID, Level.SKIP, f"FP8 weights in the optimizer: {versions} not observed",
                        "The lab's optimizer_params probe did not run these releases (docs/generations.md).")]
    if got.get("weights_outside_optimizer") is None:
        return [Finding(ID, Level.SKIP, f"FP8 weights in the optimizer: unknown ({versions})",
                        f"the engine's outcome for this start is {got.get('outcome')!r}, not a training one")]
    if not got.get("weights_outside_optimizer"):
        why = ("FP8 layers' weights stay the optimizer's" if got.get("fp8")
               else "no FP8 layer is predicted for this start")
        return [Finding(ID, Level.OK, f"FP8 weights in the optimizer: {why} ({versions})")]
    where = (f"`{intent.launch.how}`" if launched and intent.launch else "the ACCELERATE_* variables of the shell")
    since = ".".join(map(str, DEFAULT_ON_FROM))
    detail = (f"With {where}, Accelerate builds its own torchao Float8LinearConfig with {ALL_GATHER}=True (from "
              f"accelerate {since}), with or without FSDP. torchao then gives each converted weight a new Parameter "
              "inside prepare(), while the optimizer, built before prepare(), keeps the old ones: those weights get "
              "gradients but are never stepped (lab-observed: unchanged after 2 steps).")
    return [Finding(ID, Level.FAIL, f"{SENTENCE} ({versions})", detail, fix_text(facts, intent))]


def fix_text(facts: dict[str, Any], intent: Intent | None = None) -> str:
    """The all-gather-off fix for the user's start and command, rendered: the launch config's key when the start is
    `accelerate launch` of it, else the variable. `intent`: read_intent(facts), if read."""
    launch = _launch(intent if intent is not None else read_intent(facts))
    fp8 = launch.data.get("fp8_config") if launch else None
    fix = optimizer_fix(parse(facts.get("command")), launch.path if launch else None,
                        dict(fp8) if isinstance(fp8, dict) else None)
    return "\n".join(render(fix))
