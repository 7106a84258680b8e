"""Behaviour generations: what a release does with FP8, asked of the engine and rendered, never typed again.

Each field below is an answer of knowledge/engine.py for a fixed question (fp8 as the argument, fp8 only from the
environment, a recipe handler under bf16, an invalid ACCELERATE_FP8_BACKEND); a generation is a run of observed
releases that answer every question alike, labelled by its first and last observed release, and the first
accelerate release where fp8 from the environment trains in FP8 is the version every upgrade fix names.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fp8doctor.knowledge.engine import Setup, Stack, predict
from fp8doctor.knowledge.intent import chosen_backend, read_intent
from fp8doctor.knowledge.predict import (
    BACKEND_VAR,
    ERROR_NEW,
    ERROR_OLD,
    MP_VAR,
    UNCHECKED,
    has_mxfp8_option,
    recipe_classes,
    transformers_passes,
)
from fp8doctor.knowledge.releases import as_observed, observed
from fp8doctor.knowledge.versions import parse_version, release

__all__ = ["ERROR_NEW", "ERROR_OLD", "accelerate_generation", "transformers_generation", "accelerate_min",
           "first_accelerate", "intended_backend"]

TORCHAO = "0.18.0"  # the torchao release every accelerate cell ran with
INVALID_BACKEND = "NOT-A-BACKEND"


def say(outcome: dict[str, Any]) -> str:
    """An engine outcome in words, without the version (so that releases that behave alike read alike)."""
    kind = outcome.get("outcome")
    if kind == "raised":
        where = {"init": "when the Accelerator is built", "prepare": "in prepare()", "handler": "building the handler",
                 "launch": "at launch"}.get(outcome.get("stage"), "")
        return f"{outcome['type']} {where}: \"{outcome['message']}\""
    if kind == "ok":
        return (f"trains in FP8 ({outcome['mixed_precision']})" if outcome["fp8"]
                else f"runs in {outcome['mixed_precision']} and converts no layer")
    if kind == "absent":
        return "the class does not exist"
    return "not observed"


def _ask(accelerate: str, **setup: Any) -> dict[str, Any]:
    return predict(Stack(accelerate=accelerate, torchao=TORCHAO), Setup(**setup))


def _accelerate_answers(version: str) -> dict[str, Any]:
    classes = recipe_classes(version)
    handler = "AORecipeKwargs" if "AORecipeKwargs" in classes else "FP8RecipeKwargs" + UNCHECKED
    arg = _ask(version, mp_arg="fp8")
    with_recipe = _ask(version, mp_arg="fp8", handler=handler)
    env_only = _ask(version, env={MP_VAR: "fp8"})
    under_bf16 = _ask(version, mp_arg="bf16", handler=handler)
    bad_backend = _ask(version, env={MP_VAR: "fp8", BACKEND_VAR: INVALID_BACKEND})
    summary = "; ".join((
        f"mixed_precision='fp8' {say(arg)}",
        f"mixed_precision='fp8' with {handler.removesuffix(UNCHECKED)} {say(with_recipe)}",
        f"ACCELERATE_MIXED_PRECISION=fp8 alone {say(env_only)}",
        f"a recipe handler with mixed_precision='bf16' raises {under_bf16.get('type')}" if under_bf16.get("type")
        else f"a recipe handler with mixed_precision='bf16' {say(under_bf16)}",
        "ACCELERATE_FP8_BACKEND is read" if bad_backend != env_only else "ACCELERATE_FP8_BACKEND is not read",
    ))
    return {"recipe_classes": list(classes), "error_message": under_bf16.get("message"),
            "env_fp8_works": env_only.get("outcome") == "ok" and bool(env_only.get("fp8")),
            "reads_fp8_backend_env": bad_backend != env_only, "summary": summary}


@cache
def _label_of(package: str, answers_of: Any) -> dict[str, str]:
    """Observed release -> its generation label: the first and last observed release answering alike."""
    seen = observed().get(package, ())
    runs: list[list[str]] = []
    for version in seen:
        if runs and answers_of(runs[-1][-1]) == answers_of(version):
            runs[-1].append(version)
        else:
            runs.append([version])
    labels = {}
    for i, run in enumerate(runs):
        first, last = (".".join(map(str, release(v) or ())) for v in (run[0], run[-1]))
        label = first if first == last else f"{first}-{last}"
        labels.update({v: f">={first}" if i == len(runs) - 1 else label for v in run})
    return labels


def _generation(package: str, version: str, answers: dict[str, Any], answers_of: Any) -> str:
    """The label of the observed run this release belongs to: its minor's, or the run of the observed releases on
    both sides of it when they answer as it does; else its own minor, said to be unobserved."""
    asked = parse_version(as_observed({package: version}).get(package))
    labels = _label_of(package, answers_of)
    for seen in labels:
        if release(seen) == release(str(asked)) and answers_of(seen) == answers:
            return labels[seen]
    below = [s for s in labels if (parse_version(s) or asked) <= asked]  # type: ignore[operator]
    above = [s for s in labels if (parse_version(s) or asked) > asked]  # type: ignore[operator]
    if below and above and labels[below[-1]] == labels[above[0]] and answers_of(below[-1]) == answers:
        return labels[below[-1]]
    return f"{'.'.join(map(str, release(version) or ()))} (not observed)"


def _generation_of(package: str, version: str | None, answers_of: Any) -> dict[str, Any]:
    """The engine's answers for a release of `package` (asked as knowledge/releases maps it) and its generation."""
    if parse_version(version) is None:
        return {"installed": bool(version), "version": version, "generation": "unknown" if version else "absent"}
    assert version is not None
    asked = as_observed({package: version})[package]
    if parse_version(asked) is None:
        return {"installed": True, "version": version, "generation": "older than any observed release"}
    answers = answers_of(asked)
    return {"installed": True, "version": version, **answers,
            "generation": _generation(package, version, answers, answers_of)}


def accelerate_generation(version: str | None) -> dict[str, Any]:
    """What an Accelerate version does with FP8 recipe handlers and env-only fp8 (the engine's answers)."""
    out = _generation_of("accelerate", version, _accelerate_answers)
    if "summary" in out:
        out["mxfp8_block_scaling_option"] = has_mxfp8_option(version)
    return out


def first_accelerate(answer: str) -> str:
    """The first observed accelerate release (major.minor) whose `answer` is true: a key of accelerate_generation,
    e.g. `env_fp8_works` (fp8 from the environment, which `accelerate launch` sets, trains in FP8: the version every
    upgrade fix names) or `reads_fp8_backend_env`, or a recipe class name it has (`AORecipeKwargs`)."""
    for version in observed().get("accelerate", ()):
        gen = accelerate_generation(version)
        if gen.get(answer) or answer in gen.get("recipe_classes", ()):
            return ".".join(map(str, release(version) or ()))
    raise LookupError(f"no observed accelerate release has {answer}")


def accelerate_min() -> str:
    return first_accelerate("env_fp8_works")


def _transformers_answers(version: str) -> dict[str, Any]:
    passes = transformers_passes(version, None, env={})
    assert passes is not None
    how = (f"TrainingArguments writes os.environ['{MP_VAR}'] ('bf16' when bf16=True, overwriting an exported fp8); "
           "the Trainer passes no mixed_precision"
           if passes["writes_env"] else
           f"TrainingArguments.mixed_precision = {MP_VAR} or 'no', replaced by 'bf16' when bf16=True; the Trainer "
           "passes it as Accelerator(mixed_precision=...)")
    handlers = passes["kwargs_handlers"]
    how += (f" and always passes kwargs_handlers ({', '.join(handlers)}), so a patch that injects a recipe only when "
            "kwargs_handlers is missing injects nothing" if handlers else " and passes no kwargs_handlers")
    return {"writes_env": passes["writes_env"], "passes_mixed_precision": passes["mixed_precision"] is not None,
            "always_passes_kwargs_handlers": handlers is not None, "summary": how}


def transformers_generation(version: str | None) -> dict[str, Any]:
    """How a transformers version carries TrainingArguments' precision to the Accelerator (the engine's answers)."""
    return _generation_of("transformers", version, _transformers_answers)


def intended_backend(facts: dict[str, Any]) -> str:
    """'TE' or 'AO': the backend the fixes name (intent.chosen_backend)."""
    return chosen_backend(read_intent(facts), facts.get("packages", {}), bool(facts.get("te_import", {}).get("ok")))
