"""What each repro row is expected to end in: the engine's prediction (knowledge/engine.py) for the row's setup on the
diagnosed releases, in repro's words. No row's expectation is written by hand; where the engine makes no claim, the
row has none (its verdict is shown, never flagged UNEXPECTED)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fp8doctor.facts.packages import version_of
from fp8doctor.knowledge.engine import Setup, Stack, predict
from fp8doctor.knowledge.predict import ERROR_NEW, ERROR_OLD, UNCHECKED, recipe_classes
from fp8doctor.knowledge.releases import as_observed
from fp8doctor.runs.backends import backend_env, needs_recipe_handler
from fp8doctor.runs.backends.te import UNCHECKED_ENV
from fp8doctor.runs.spec import RunSpec
from fp8doctor.verdicts import FAILED, FP8_ACTIVE, REPRODUCED, not_fp8_word

PATCHES = {"buggy_patch_append": "always_append", "buggy_patch_if_missing": "inject_if_missing"}
LIBRARIES = ("accelerate", "transformers", "torchao", "transformer-engine", "llamafactory")


def stack_of(versions: Mapping[str, str | None], cuda_build: bool) -> Stack:
    """The engine's input for installed versions ({distribution: version}) as repro asks it."""
    observed = as_observed({name: versions.get(name) for name in LIBRARIES})
    return Stack(**{f.replace("-", "_"): observed.get(f) for f in LIBRARIES},  # type: ignore[arg-type]
                 cuda_build=cuda_build)


def diagnosed_stack() -> Stack:
    from fp8doctor.runs.machine import snapshot

    return stack_of({name: version_of(name) for name in LIBRARIES}, bool(snapshot().get("gpu_count")))


def handler_name(spec: RunSpec, accelerate: str | None) -> str | None:
    """The recipe class an entry passes (runs/backends), as the engine names it."""
    classes = recipe_classes(accelerate)
    if spec.backend == "torchao":
        return "AORecipeKwargs"
    if spec.backend == "te":
        if "TERecipeKwargs" in classes:
            return "TERecipeKwargs"
        return "FP8RecipeKwargs" + (UNCHECKED if spec.env.get(UNCHECKED_ENV) == "1" else "")
    return None


def setup_of(spec: RunSpec, stack: Stack, launch_yaml: dict[str, Any] | None = None) -> Setup | None:
    """The engine's input for one run spec (None: a path Accelerate is not on, or one the engine has no input for)."""
    env = {k: v for k, v in spec.env.items() if k.startswith("ACCELERATE_")}
    precision = "bf16" if spec.bf16 else None
    if spec.entry in ("accelerator", "multiproc"):
        # The torchao handler's Float8LinearConfig.from_recipe_name(recipe) sets none of the fields the engine
        # reads: torchao's defaults apply.
        return Setup(mp_arg=spec.mixed_precision, handler=handler_name(spec, stack.accelerate), env=env,
                     ao_config={} if spec.backend == "torchao" else None)
    if spec.entry in PATCHES:
        return Setup(frontend="trainer", precision=precision, env=env, patch=PATCHES[spec.entry])
    if spec.entry == "trainer":
        if needs_recipe_handler(spec.backend, spec.recipe):
            return None  # the entry adds a recipe handler through the Trainer, a path the lab did not probe
        if "ACCELERATE_MIXED_PRECISION" not in env:
            env = {"ACCELERATE_MIXED_PRECISION": spec.mixed_precision, **backend_env(spec.backend, spec.recipe), **env}
        return Setup(frontend="trainer", precision=precision, env=env)
    if spec.entry == "launch" and launch_yaml is not None:
        if needs_recipe_handler(spec.backend, spec.recipe):  # the launched script's Accelerator(kwargs_handlers=...)
            return Setup(launch_yaml=launch_yaml, handler=handler_name(spec, stack.accelerate), ao_config={})
        return Setup(launch_yaml=launch_yaml)
    return None


def words(outcome: dict[str, Any]) -> tuple[str, ...]:
    """An engine outcome as the repro verdicts it allows (empty: no claim)."""
    kind = outcome.get("outcome")
    if kind == "raised":
        if outcome.get("type") == "ValueError" and outcome.get("message") in (ERROR_NEW, ERROR_OLD):
            return (REPRODUCED,)
        return (FAILED,)
    if kind == "ok":
        return (FP8_ACTIVE,) if outcome["fp8"] else (not_fp8_word(outcome["mixed_precision"]),)
    return ()


def expected(spec: RunSpec, stack: Stack, launch_yaml: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The verdicts the engine predicts for this spec on these releases (native: torchao converts by itself)."""
    if spec.entry == "native":
        return (FP8_ACTIVE,)
    setup = setup_of(spec, stack, launch_yaml)
    return words(predict(stack, setup)) if setup is not None else ()


def launch_config_of(spec: RunSpec) -> dict[str, Any] | None:
    """The Accelerate config a launch row starts with: the user's adapted file, or the one the entry writes."""
    if spec.config_file:
        import yaml

        try:
            with open(spec.config_file, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError):
            return None
        return data if isinstance(data, dict) else None
    from fp8doctor.runs.entries.accelerate_launch import accelerate_config
    from fp8doctor.runs.machine import default_device

    return accelerate_config(spec, spec.device or default_device())
