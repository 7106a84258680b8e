"""Which mixed precision really reaches the Accelerator, and the chain that decides it (pure, on facts).

The user's setup is read once (knowledge/intent.py) and handed to the engine (knowledge/engine.py), whose
composition is the one the lab's recorded cases test. An Accelerate config file enters only through `accelerate
launch` (Accelerator() reads its argument and the environment).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fp8doctor.knowledge.capability import FAMILY_MIN_CC
from fp8doctor.knowledge.engine import Stack, predict
from fp8doctor.knowledge.intent import (
    TRAINING_KINDS,
    Intent,
    axolotl_sets,
    read_intent,
    resolved,
    training_precision,
    truthy,
)
from fp8doctor.knowledge.releases import as_observed, coverage_notes

__all__ = ["effective_precision", "fp8_intent", "describe_outcome"]


def fp8_intent(facts: Mapping[str, Any]) -> list[str]:
    """Every sign that the user means to train in FP8 (empty list: no sign)."""
    return list(read_intent(facts).signs)


def _config_steps(facts: Mapping[str, Any], intent: Intent) -> list[dict[str, str]]:
    chain = []
    for c in (resolved(c, facts.get("packages", {})) for c in facts.get("configs", [])):
        if c.get("kind") in TRAINING_KINDS or c.get("kind") == "deepspeed":
            tp = training_precision(c["data"], c["kind"])
            fp8 = "fp8: true" if truthy(c["data"].get("fp8")) and c["kind"] != "deepspeed" else ""
            shown = ", ".join(x for x in (f"{tp}: true" if tp else "no bf16/fp16", fp8) if x)
            chain.append({"stage": "config", "source": c["path"], "value": shown})
        elif c.get("kind") == "axolotl":
            chain.append({"stage": "config", "source": c["path"],
                          "value": f"axolotl sets ACCELERATE_MIXED_PRECISION={axolotl_sets(c['data'])}"})
    if intent.launch and intent.launch.mixed_precision is not None:
        chain.append({"stage": "config", "source": intent.launch.path,
                      "value": f"mixed_precision: {intent.launch.mixed_precision} (applies only through "
                               f"`{intent.launch.how}`)"})
    shell = intent.env.get("ACCELERATE_MIXED_PRECISION")
    by = "from axolotl" if any(c.get("kind") == "axolotl" for c in facts.get("configs", [])) else "from the shell"
    chain.append({"stage": "env", "source": "ACCELERATE_MIXED_PRECISION",
                  "value": f"{shell!r} {by}" if shell is not None else "unset"})
    return chain


def effective_precision(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The mixed precision the Accelerator ends up with when the user starts training without `accelerate launch`
    (python, torchrun, llamafactory-cli), each step of the chain, the precision under `accelerate launch` of the
    config file when there is one, and the predicted outcome. Values are compared exactly, as Accelerate does."""
    pkgs = facts.get("packages", {})
    intent = read_intent(facts)
    stack = Stack.of(as_observed(pkgs))
    plain = predict(stack, intent.setup())
    chain = _config_steps(facts, intent) + plain["chain"]
    effective = plain.get("reaches") or ("unknown" if plain["outcome"] == "unknown"
                                         else f"nothing ({plain['type']} before the Accelerator)")
    with_launch = None
    if intent.launch and intent.launch.mixed_precision is not None:
        launched = predict(stack, intent.setup(launched=True))
        with_launch = launched.get("reaches") or launched.get("error_line")
    cc = [tuple(g["cc"]) for g in facts.get("gpu", {}).get("visible", []) if g.get("cc")]
    hardware_note = None
    if effective == "fp8" and cc and max(cc) < FAMILY_MIN_CC["per-tensor"]:
        hardware_note = (f"Accelerate turns fp8 into fp16 on compute capability {max(cc)[0]}.{max(cc)[1]} "
                         f"(below {FAMILY_MIN_CC['per-tensor'][0]}.{FAMILY_MIN_CC['per-tensor'][1]}) with only a "
                         "warning")
    outcome = {k: v for k, v in plain.items() if k not in ("chain", "passes", "reaches", "mp_arg")}
    return {
        "effective": effective,
        "with_launch": with_launch,
        "launch": intent.launch.how if intent.launch else None,
        "chain": chain,
        "trainer_path": intent.frontend != "script",
        "hardware_note": hardware_note,
        "outcome": outcome,
        "prediction": describe_outcome(outcome, pkgs.get("accelerate")),
        "observed": coverage_notes(pkgs),
    }


def describe_outcome(outcome: dict[str, Any], accelerate: str | None) -> str | None:
    """One sentence for a predicted Accelerator outcome (None when the doctor makes no claim)."""
    kind = outcome.get("outcome")
    if kind == "raised":
        where = {"init": "when the Accelerator is built", "prepare": "in prepare()"}.get(outcome.get("stage"), "")
        return f"{outcome['type']} {where} (accelerate {accelerate}): {outcome['message']}".replace("  ", " ")
    if kind == "ok":
        if outcome["fp8"]:
            return f"FP8 active: Linear layers converted by Accelerate {accelerate}"
        return (f"no FP8: the Accelerator runs with mixed precision {outcome['mixed_precision']!r} and converts no "
                f"layer (accelerate {accelerate})")
    return None
