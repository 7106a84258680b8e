"""The engine: what one training start does with FP8, for a stack of library releases (pure, on version strings).

`predict(stack, setup)` composes the observed rules of predict.py along the path a start really takes: the
launcher (`accelerate launch --config_file` exports the config as variables, or refuses it), the frontend
(TrainingArguments, LLaMA-Factory's Trainer, the reference report's patches) and the Accelerator. `env` asks it for
the user's setup, repro for each row's expectation, and tests/test_generation_predictions.py holds it against every
recorded lab case, so the code that diagnoses is the code the observations test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.knowledge import fp8_config_keys
from fp8doctor.knowledge.predict import (
    AO_READS_ENV_FROM,
    BACKEND_VAR,
    LAUNCH_AO_DEFAULTS,
    MP_VAR,
    TE_MODULE_MISSING,
    UNCHECKED,
    UNKNOWN,
    launch_rejects,
    llamafactory_sets_env,
    predict_accelerator,
    recipe_classes,
    state_mixed_precision,
    transformers_passes,
)
from fp8doctor.knowledge.versions import release

FRONTENDS = ("script", "trainer", "llamafactory")
PATCHES = ("inject_if_missing", "always_append")
LF_FP8_STAGES = ("pt", "sft")  # the LLaMA-Factory stages whose Trainer sets up FP8


@dataclass(frozen=True)
class Stack:
    """The library releases the start runs with (None: not installed)."""

    accelerate: str | None = None
    transformers: str | None = None
    torchao: str | None = None
    transformer_engine: str | None = None
    msamp: str | None = None
    llamafactory: str | None = None
    cuda_build: bool = False  # torch built with CUDA (accelerate 1.4 asserts it for fp8)

    @classmethod
    def of(cls, versions: Mapping[str, Any]) -> Stack:
        """From a versions mapping as facts and lab records spell it (distribution or module names)."""
        def pick(*names: str) -> str | None:
            for name in names:
                if versions.get(name):
                    return str(versions[name])
            return None

        return cls(accelerate=pick("accelerate"), transformers=pick("transformers"), torchao=pick("torchao"),
                   transformer_engine=pick("transformer-engine", "transformer_engine", "transformer-engine-torch"),
                   msamp=pick("msamp", "ms-amp"), llamafactory=pick("llamafactory"))


@dataclass(frozen=True)
class Setup:
    """How training starts: everything the user controls that the libraries read."""

    frontend: str = "script"  # script: the user's own Accelerator(); trainer: HF Trainer; llamafactory
    env: Mapping[str, str] = field(default_factory=dict)  # ACCELERATE_* variables of the shell
    mp_arg: str | None = None  # script: Accelerator(mixed_precision=...)
    handler: str | None = None  # script: kwargs_handlers=[handler] (a recipe class name; X[unchecked])
    precision: str | None = None  # trainer / llamafactory: TrainingArguments' bf16 or fp16 (None: neither)
    lf_fp8: Mapping[str, Any] = field(default_factory=dict)  # llamafactory: its fp8 keys (fp8, fp8_backend, stage)
    patch: str | None = None  # trainer: one of the reference report's patches of Accelerator.__init__
    launch_yaml: Mapping[str, Any] | None = None  # started by `accelerate launch --config_file` with this config
    ao_config: Mapping[str, Any] | None = None  # script: AORecipeKwargs(config=Float8LinearConfig(**ao_config))


def _step(stage: str, source: str, value: str) -> dict[str, str]:
    return {"stage": stage, "source": source, "value": value}


def launch_env(config: Mapping[str, Any], accelerate: str | None = None) -> dict[str, str]:
    """The variables `accelerate launch --config_file` exports for a config it accepts (observed: its mixed
    precision and fp8_config's backend; given the release, also the other fp8_config keys as it exports them,
    knowledge/fp8_config_keys)."""
    env: dict[str, str] = {}
    if "mixed_precision" in config:
        env[MP_VAR] = str(config["mixed_precision"])
    r = release(accelerate)
    if str(config.get("mixed_precision")) == "fp8" and r is not None and r >= AO_READS_ENV_FROM:
        env.update(LAUNCH_AO_DEFAULTS)
    fp8 = config.get("fp8_config")
    if isinstance(fp8, Mapping) and fp8.get("backend"):
        env[BACKEND_VAR] = str(fp8["backend"])
    if isinstance(fp8, Mapping) and accelerate is not None:
        for key, value in fp8.items():
            if key != "backend":
                env.update(fp8_config_keys.exported(accelerate, str(key), value) or {})
    return env


def predict(stack: Stack, setup: Setup) -> dict[str, Any]:
    """The outcome of one start (predict.py's vocabulary: ok / raised / absent / unknown), with `chain` (each stage
    that decided the precision), `reaches` (the mixed precision the Accelerator's state gets) and `mp_arg`."""
    if setup.frontend not in FRONTENDS:
        raise ValueError(f"unknown frontend {setup.frontend!r}")
    chain: list[dict[str, str]] = []
    env = dict(setup.env)
    if setup.launch_yaml is not None:
        why = launch_rejects(setup.launch_yaml, stack.accelerate, torchao=bool(stack.torchao),
                             te=bool(stack.transformer_engine), msamp=bool(stack.msamp))
        if why:
            type_, _, message = why.partition(": ")
            return {"outcome": "raised", "type": type_, "message": message, "stage": "launch", "error_line": why,
                    "chain": [_step("launch", "accelerate launch --config_file", "refused")]}
        exported = launch_env(setup.launch_yaml)
        env.update(exported)
        shown = ", ".join(f"{k}={v}" for k, v in exported.items()) or "no ACCELERATE_MIXED_PRECISION"
        chain.append(_step("launch", "accelerate launch --config_file", shown))
    if setup.frontend == "script":
        return _accelerator(stack, setup.mp_arg, env, setup.handler, chain, rename=None)
    passes = transformers_passes(stack.transformers, setup.precision, env)
    if passes is None:
        chain.append(_step("TrainingArguments", "transformers not installed", "unknown"))
        return {**UNKNOWN, "chain": chain}
    if passes["writes_env"]:
        env[MP_VAR] = passes["env_after"]
        chain.append(_step("TrainingArguments", f"transformers {stack.transformers} writes the variable",
                           f"{MP_VAR}={passes['env_after']}"))
    else:
        chain.append(_step("TrainingArguments", f"transformers {stack.transformers} passes mixed_precision",
                           str(passes["mixed_precision"])))
    if setup.frontend == "llamafactory":
        if _lf_fp8(setup) and llamafactory_sets_env(stack.llamafactory) is None:
            got = _either_llamafactory(stack, env, chain, passes)
        else:
            got = _llamafactory(stack, setup, env, chain)
        if got is None:
            got = _accelerator(stack, passes["mixed_precision"], env, None, chain, rename=None)
        if got["outcome"] == "ok":
            got["trained_in"] = "fp8" if got["fp8"] else got["mixed_precision"]
        return {**got, "passes": passes}
    recipe = _injected(stack, setup.patch, passes)
    if recipe == "AORecipeKwargs" and not stack.torchao:
        return {**UNKNOWN, "chain": chain, "passes": passes}
    got = _accelerator(stack, passes["mixed_precision"], env, recipe, chain, rename="trainer")
    return {**got, "passes": passes}


def _injected(stack: Stack, patch: str | None, passes: dict[str, Any]) -> str | None:
    """The recipe handler one of the reference report's patches adds (None: none). Without AORecipeKwargs
    (accelerate <= 1.3) the lab injects FP8RecipeKwargs as a TE user has it (unchecked: TE is absent here)."""
    if patch is None:
        return None
    if patch not in PATCHES:
        raise ValueError(f"unknown patch {patch!r}")
    if patch == "inject_if_missing" and passes["kwargs_handlers"] is not None:
        return None
    return "AORecipeKwargs" if "AORecipeKwargs" in recipe_classes(stack.accelerate) else "FP8RecipeKwargs" + UNCHECKED


def _lf_fp8(setup: Setup) -> bool:
    keys = setup.lf_fp8
    return bool(keys.get("fp8")) and str(keys.get("stage", "sft")) in LF_FP8_STAGES


def _either_llamafactory(stack: Stack, env: dict[str, str], chain: list[dict[str, str]],
                         passes: dict[str, Any]) -> dict[str, Any]:
    """A LLaMA-Factory release the lab did not observe, or none installed here: the Accelerator's outcome when the
    two observed behaviours (0.9.4 sets nothing, 0.9.5 sets the variable) agree, else unknown. Whether it can import
    Transformer Engine is not judged: the environment it runs in is not the one diagnosed."""
    outcomes = []
    for sets in (False, True):
        tried = {**env, MP_VAR: "fp8"} if sets else dict(env)
        outcomes.append(_accelerator(stack, passes["mixed_precision"], tried, None, [], rename=None))
    source = f"LLaMA-Factory {stack.llamafactory or '(not installed here)'} Trainer (fp8: true)"
    if outcomes[0] != outcomes[1]:
        chain.append(_step("LLaMA-Factory", source, "release not observed, and whether it sets "
                           f"{MP_VAR}=fp8 decides the outcome"))
        return {**UNKNOWN, "chain": chain}
    chain.append(_step("LLaMA-Factory", source, f"release not observed; the same whether it sets {MP_VAR}=fp8 or not"))
    return {**outcomes[0], "chain": chain + outcomes[0]["chain"]}


def _llamafactory(stack: Stack, setup: Setup, env: dict[str, str],
                  chain: list[dict[str, str]]) -> dict[str, Any] | None:
    """LLaMA-Factory's Trainer before the Accelerator: a raised outcome, or None after it set what it sets."""
    if not _lf_fp8(setup):
        return None
    keys = setup.lf_fp8
    sets = llamafactory_sets_env(stack.llamafactory)
    source = f"LLaMA-Factory {stack.llamafactory} Trainer (fp8: true)"
    if not sets:
        chain.append(_step("LLaMA-Factory", source, f"leaves {MP_VAR} as it is"))
        return None
    if keys.get("fp8_backend") == "te" and not stack.transformer_engine:
        chain.append(_step("LLaMA-Factory", source, "imports transformer_engine"))
        return {"outcome": "raised", "type": "ModuleNotFoundError", "message": TE_MODULE_MISSING,
                "stage": "trainer_init", "chain": chain, "reaches": None}
    env[MP_VAR] = "fp8"
    chain.append(_step("LLaMA-Factory", source, f"{MP_VAR}=fp8 (and FP8_BACKEND, which Accelerate never reads)"))
    return None


def _accelerator(stack: Stack, mp_arg: str | None, env: dict[str, str], handler: str | None,
                 chain: list[dict[str, str]], rename: str | None) -> dict[str, Any]:
    reaches = state_mixed_precision(mp_arg, env)
    source = "argument" if mp_arg is not None else MP_VAR if env.get(MP_VAR) is not None else "default"
    chain.append(_step("Accelerator", source, reaches))
    got = predict_accelerator(stack.accelerate, torchao=bool(stack.torchao), mp_arg=mp_arg, env=env, handler=handler,
                              te=bool(stack.transformer_engine), msamp=bool(stack.msamp), cuda_build=stack.cuda_build)
    if rename == "trainer" and got["outcome"] == "raised":
        got["stage"] = "train" if got["stage"] == "prepare" else "Trainer"
    return {**got, "chain": chain, "reaches": reaches, "mp_arg": mp_arg}
