"""What a given release of Accelerate / transformers does with one set of inputs (pure, on version strings).

Each rule here is held against the lab's observations (lab/observations/*.json, tests/test_generation_predictions.py):
where they disagree, this module changes. Outcomes are the lab's vocabulary: `ok` (with the state's mixed precision
and whether any layer was converted to FP8), `raised` (type, message, stage), `absent` (no such class), or
`unknown` where no observation backs a claim (the doctor then says nothing).

Values are taken exactly as the library takes them: ACCELERATE_MIXED_PRECISION is compared to "fp8" as written,
so "Fp8" or "FP8 " is not fp8.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from packaging.version import Version

from fp8doctor.knowledge.versions import release

MP_VAR = "ACCELERATE_MIXED_PRECISION"
BACKEND_VAR = "ACCELERATE_FP8_BACKEND"
UNCHECKED = "[unchecked]"  # the lab's handler built without its __post_init__ (as a user with TE would have it)

ERROR_OLD = "Passing in a `FP8RecipeKwargs` object requires setting `mixed_precision='fp8'`."
ERROR_NEW = "Passing in an FP8 configuration requires setting `mixed_precision='fp8'`."
NO_FP8_LIBRARY = "Using `fp8` precision requires `transformer_engine` or `MS-AMP` to be installed."
TE_MISSING_OLD = ("TransformerEngine is not available. Please either install it, or use the 'MSAMP' backend "
                  "(if installed).")
TE_MISSING_NEW = "TransformerEngine is not available. Please install it or use a different backend."
TE_MISSING_PREPARE = ("`transformer_engine` was not found on your system. Please ensure that `transformer_engine` "
                      "is installed")
MSAMP_MISSING = ("MS-AMP was not found on your system. Please ensure that MS-AMP is available  or choose `'te'` as the "
                 "backend for FP8 mixed precision training.")
NO_CUDA_BUILD = "Torch not compiled with CUDA enabled"
AO_FILTER_TYPEERROR = "filter_linear_layers() got an unexpected keyword argument 'first_layer_name'"
AO_WITHOUT_RECIPE = "'NoneType' object has no attribute 'config'"
TE_MODULE_MISSING = "No module named 'transformer_engine'"
FSDP_PLUGIN_NONE = ("`AcceleratorState` object has no attribute `fsdp_plugin`. This happens if "
                    "`AcceleratorState._reset_state()` was called and an `Accelerator` or `PartialState` was not "
                    "reinitialized.")
BACKENDS = ("AO", "TE", "MSAMP", "NO")
MIXED_PRECISIONS = ("no", "fp16", "bf16", "fp8")  # the values Accelerate's PrecisionType knows
BACKENDS_116 = ("AO", "TE", "NO")  # 1.16 dropped MS-AMP (FP8BackendType, FP8RecipeKwargs, MSAMPRecipeKwargs)
RECIPES_OLD = ("FP8RecipeKwargs",)
RECIPES_NEW = ("FP8RecipeKwargs", "AORecipeKwargs", "TERecipeKwargs", "MSAMPRecipeKwargs")
RECIPES_116 = ("AORecipeKwargs", "TERecipeKwargs")
HANDLER_BACKEND = {"AORecipeKwargs": "AO", "TERecipeKwargs": "TE", "MSAMPRecipeKwargs": "MSAMP"}


def _raised(type_: str, message: str, stage: str, **extra: Any) -> dict[str, Any]:
    return {"outcome": "raised", "type": type_, "message": message, "stage": stage, **extra}


def _ok(mixed_precision: str, fp8: bool) -> dict[str, Any]:
    return {"outcome": "ok", "mixed_precision": mixed_precision, "fp8": fp8}


UNKNOWN: dict[str, Any] = {"outcome": "unknown"}


def state_mixed_precision(mp_arg: str | None, env: Mapping[str, str]) -> str:
    """AcceleratorState's mixed precision: the argument, else the variable verbatim, else 'no'."""
    return mp_arg if mp_arg is not None else env.get(MP_VAR, "no")


def has_mxfp8_option(accelerate: str | None) -> bool:
    """Whether this Accelerate's TE recipe has the use_mxfp8_block_scaling option (from 1.11)."""
    r = release(accelerate)
    return r is not None and r >= (1, 11)


def mixed_precision_problem(value: str) -> str | None:
    """What Accelerate does with a mixed precision it does not know (None: a known value). It compares exactly and
    takes any other value as written (lab-observed with ACCELERATE_MIXED_PRECISION, accelerate 1.1 to 1.15)."""
    if value in MIXED_PRECISIONS:
        return None
    near = value.strip().lower()
    if near in MIXED_PRECISIONS:
        return (f"Accelerate compares it exactly, so {value!r} is not {near!r}: AcceleratorState.mixed_precision "
                f"becomes {value!r}, no layer is converted, and with a recipe handler Accelerator() raises ValueError: "
                f"{ERROR_NEW}")
    return (f"Accelerate takes it as written (AcceleratorState.mixed_precision = {value!r}) and trains without mixed "
            "precision")


def recipe_classes(accelerate: str | None) -> tuple[str, ...]:
    r = release(accelerate)
    if r is None:
        return ()
    return RECIPES_OLD if r < (1, 4) else RECIPES_NEW if r < (1, 16) else RECIPES_116


def auto_backends(accelerate: str | None) -> tuple[str, ...]:
    """The backends Accelerate tries, in its order, for mixed_precision='fp8' when no recipe handler (and, from 1.9,
    no ACCELERATE_FP8_BACKEND) names one; () where nothing is chosen. <= 1.3 has no such choice; 1.4-1.7 build an
    AORecipeKwargs they never apply, so no layer is converted (lab: acc1.5-1.7 hold it, fp8_backend None); from 1.8
    torchao is taken when installed (lab: 1.9-1.16 convert with AO, 1.8 fails on its AO-only fsdp_plugin check).
    TE before MS-AMP is Accelerate's own "Prioritize AO -> TE -> MSAMP" (the lab has neither); 1.16 dropped MS-AMP
    (lab: 'MSAMP' is not a valid FP8BackendType, MSAMPRecipeKwargs absent)."""
    r = release(accelerate)
    if r is None or r < (1, 8):
        return ()
    return ("AO", "TE", "MSAMP") if r < (1, 16) else ("AO", "TE")


def auto_backend(accelerate: str | None, *, torchao: bool, te: bool = False, msamp: bool = False) -> str | None:
    """The backend Accelerate picks itself among those installed (None: none, see auto_backends)."""
    installed = {"AO": torchao, "TE": te, "MSAMP": msamp}
    return next((b for b in auto_backends(accelerate) if installed[b]), None)


def predict_accelerator(accelerate: str | None, *, torchao: bool, mp_arg: str | None, env: Mapping[str, str],
                        handler: str | None, te: bool = False, msamp: bool = False,
                        cuda_build: bool = False) -> dict[str, Any]:
    """`Accelerator(mixed_precision=mp_arg, kwargs_handlers=[handler])` then `prepare(model, optimizer)` of a model
    with eligible Linear layers, in a process whose environment is `env`."""
    r = release(accelerate)
    if r is None or te or msamp:
        return dict(UNKNOWN)  # the lab has no TE / MS-AMP: nothing observed to predict from
    name = handler.removesuffix(UNCHECKED) if handler else None
    unchecked = bool(handler and handler.endswith(UNCHECKED))
    if name is not None:
        if name not in recipe_classes(accelerate):
            return {"outcome": "absent", "stage": "handler"}
        if not unchecked and name in ("FP8RecipeKwargs", "TERecipeKwargs"):
            if r < (1, 4):
                return _raised("ValueError", TE_MISSING_OLD, "handler")
            return _raised("ImportError", TE_MISSING_NEW, "handler")
    state_mp = state_mixed_precision(mp_arg, env)
    fp8_library = torchao and r >= (1, 4)
    if state_mp == "fp8":
        if not fp8_library:  # 1.16 names torchao in this message; no cell without torchao observed it yet
            return _raised("ValueError", NO_FP8_LIBRARY, "init") if r < (1, 16) else dict(UNKNOWN)
        if r == (1, 4):
            return _raised("AssertionError", NO_CUDA_BUILD, "init") if not cuda_build else dict(UNKNOWN)
    if r < (1, 4):  # fp8 raised above: no torchao backend before 1.4
        return _ok(state_mp, False) if name is None else _raised("ValueError", ERROR_OLD, "init")
    backend: str | None = None
    if name is not None:
        backend = HANDLER_BACKEND.get(name)  # an unchecked FP8RecipeKwargs keeps backend None
    enabled = state_mp == "fp8"  # Accelerate also ORs mp_arg == 'fp8', which the state already is then
    registered = name is not None
    if r >= (1, 9):
        if enabled and not registered:
            chosen = env.get(BACKEND_VAR, "NO")
            if chosen not in (BACKENDS if r < (1, 16) else BACKENDS_116):
                return _raised("ValueError", f"{chosen!r} is not a valid FP8BackendType", "init")
            if chosen == "NO":
                chosen = auto_backend(accelerate, torchao=torchao) or "NO"
            if chosen == "TE":
                return _raised("ImportError", TE_MISSING_NEW, "init")
            backend = chosen  # now registered, and enabled: no check below applies
        if registered and not enabled:
            return _raised("ValueError", ERROR_NEW, "init")
        if registered and backend is None:
            return _raised("ValueError", "None is not a valid FP8BackendType", "init")
        if not enabled and not registered and env.get(BACKEND_VAR) == "AO":
            # A leftover ACCELERATE_FP8_BACKEND=AO sends prepare() down the torchao path without a recipe.
            return _raised("AttributeError", AO_WITHOUT_RECIPE, "prepare", mixed_precision=state_mp)
    elif r >= (1, 8):
        if enabled and not registered:
            backend, registered = auto_backend(accelerate, torchao=torchao), True
        if registered and mp_arg != "fp8":
            return _raised("ValueError", ERROR_NEW, "init")
        if backend == "AO":
            return _raised("AttributeError", FSDP_PLUGIN_NONE, "init")
    else:
        # 1.4-1.7: a handler Accelerate creates itself for mixed_precision='fp8' is never registered, so nothing
        # converts; a handler the caller passes needs the argument itself to be 'fp8'.
        if registered and mp_arg != "fp8":
            return _raised("ValueError", ERROR_NEW, "init")
    mp_state = state_mp
    if backend == "AO":
        if r[:2] == (1, 5):
            return _raised("TypeError", AO_FILTER_TYPEERROR, "prepare", mixed_precision=mp_state)
        return _ok(mp_state, True)
    if backend == "TE":
        return _raised("ImportError", TE_MISSING_PREPARE, "prepare", mixed_precision=mp_state)
    if backend == "MSAMP":
        return _raised("ImportError", MSAMP_MISSING, "prepare", mixed_precision=mp_state)
    return _ok(mp_state, False)


def transformers_passes(transformers: str | None, precision: str | None,
                        env: Mapping[str, str]) -> dict[str, Any] | None:
    """What TrainingArguments(bf16=... or fp16=...; `precision` names the one set, None: neither) and Trainer do
    with the precision: the variable after TrainingArguments, and the mixed_precision / kwargs_handlers the Trainer
    passes to Accelerator (None: not passed)."""
    r = release(transformers)
    if r is None:
        return None
    chosen = precision or env.get(MP_VAR, "no")
    if r[0] < 5:
        # TrainingArguments writes the variable; the Trainer passes neither argument.
        return {"env_after": chosen, "mixed_precision": None, "kwargs_handlers": None, "writes_env": True}
    return {"env_after": env.get(MP_VAR), "mixed_precision": chosen, "writes_env": False,
            "kwargs_handlers": ["DistributedDataParallelKwargs"] if r >= (5, 3) else None}


LAUNCH_NEEDS_DISTRIBUTED_TYPE = "A `distributed_type` must be specified in the config file."
LAUNCH_NO_FP8_OLD = ("FP8 is not available on this machine. Please ensure that either Transformer Engine or MSAMP is "
                     "installed.")
LAUNCH_NO_FP8 = ("FP8 is not available on this machine. Please ensure that either Transformer Engine, MSAMP or "
                 "torchao is installed.")
LAUNCH_FP8_CONFIG_TYPEERROR = "expected str, bytes or os.PathLike object, not bool"


def launch_rejects(config: Mapping[str, Any], accelerate: str | None = None, *, torchao: bool = True,
                   te: bool = False, msamp: bool = False) -> str | None:
    """Why `accelerate launch` stops before the script starts with this config ("Type: message"), None when it
    starts the script (launch_config and fp8_config_keys probes): a file without distributed_type is refused by every
    release; with mixed_precision fp8, <= 1.3 wants Transformer Engine or MS-AMP, 1.4-1.8 crash while exporting
    the FP8 variables, 1.8 without torchao wants a backend."""
    if "distributed_type" not in config:
        return f"ValueError: {LAUNCH_NEEDS_DISTRIBUTED_TYPE}"
    r = release(accelerate)
    if r is None or config.get("mixed_precision") != "fp8" or r >= (1, 9):
        return None
    has_backend = te or msamp or (torchao and r >= (1, 4))
    if r < (1, 4):
        return None if has_backend else f"RuntimeError: {LAUNCH_NO_FP8_OLD}"
    if r == (1, 4) and torchao:
        fp8 = config.get("fp8_config") if isinstance(config.get("fp8_config"), dict) else {}
        kind = "list" if isinstance(fp8.get("override_linear_precision"), list) else "tuple"
        return f"AttributeError: '{kind}' object has no attribute 'strip'"
    # 1.5-1.8 export the launcher's own override_linear_precision default as bools: subprocess refuses them
    return f"TypeError: {LAUNCH_FP8_CONFIG_TYPEERROR}" if has_backend else f"RuntimeError: {LAUNCH_NO_FP8}"


def _te_missing(r: tuple[int, int]) -> dict[str, Any]:
    if r < (1, 4):
        return {"outcome": "raised", "type": "ValueError", "message": TE_MISSING_OLD}
    return {"outcome": "raised", "type": "ImportError", "message": TE_MISSING_NEW}


FLAG_TRUE = ("1", "true", "yes", "y", "on", "t")  # how Accelerate parses a flag variable


def flag_true(value: str) -> bool:
    """A flag variable's value as Accelerate reads it (lowercased, not stripped)."""
    return value.lower() in FLAG_TRUE
AO_READS_ENV_FROM = (1, 13)  # AORecipeKwargs has pad_inner_dim / enable_fsdp_float8_all_gather, read from env
ALL_GATHER_VAR = "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER"
AO_ENV_FIELDS = {"ACCELERATE_FP8_PAD_INNER_DIM": "pad_inner_dim", ALL_GATHER_VAR: "enable_fsdp_float8_all_gather"}
# `accelerate launch` with fp8 mixed precision exports every fp8_* option of its command line, those two with their
# default true ("1" from a config file), over the shell's (observed: the launch_config probe's launched environment,
# 1.13-1.16; 1.12 has no such option).
LAUNCH_AO_DEFAULTS = {"ACCELERATE_FP8_PAD_INNER_DIM": "1", ALL_GATHER_VAR: "1"}


def recipe_fields_from_env(accelerate: str | None, what: str, env: Mapping[str, str]) -> dict[str, Any] | None:
    """The recipe fields that ACCELERATE_FP8_* variables change when `what` is built (None: no claim). Observed:
    MSAMPRecipeKwargs reads ACCELERATE_FP8_OPT_LEVEL (default O2) from 1.4; AORecipeKwargs reads PAD_INNER_DIM and
    ENABLE_FSDP_FLOAT8_ALL_GATHER (default true) from 1.13 (fp8_config_keys probe: 1.13, 1.14, 1.16 read them),
    not in 1.11."""
    r = release(accelerate)
    if r is None:
        return None
    fields: dict[str, Any] = {}
    if what == "MSAMPRecipeKwargs":
        value = env.get("ACCELERATE_FP8_OPT_LEVEL")
        if value is not None and value != "O2":
            fields["opt_level"] = {"default": "O2", "with_env": value}
    if what == "AORecipeKwargs":
        for var, name in AO_ENV_FIELDS.items():
            if var not in env or flag_true(env[var]):
                continue
            if r >= AO_READS_ENV_FROM:
                fields[name] = {"default": True, "with_env": False}
                fields["config"] = "changed"
    return fields


def predict_env_reads(accelerate: str | None, *, torchao: bool, what: str, unchecked: bool | None,
                      env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Building a recipe class with every ACCELERATE_FP8_* variable set, on a machine without Transformer Engine or
    MS-AMP: which fields the variables change. The TE classes check for TE before reading any variable (so none
    changes here); the torchao / MS-AMP ones as `recipe_fields_from_env` says; `Accelerator` stands for
    Accelerator(mixed_precision='fp8') with ACCELERATE_FP8_BACKEND=AO (its construction only)."""
    r = release(accelerate)
    if r is None:
        return dict(UNKNOWN)
    if what == "Accelerator":
        got = predict_accelerator(accelerate, torchao=torchao, mp_arg="fp8", env={BACKEND_VAR: "AO"}, handler=None)
        if got["outcome"] == "raised" and got["stage"] == "init":
            return got
        return {"outcome": "ok"} if got["outcome"] != "unknown" else got
    if what not in recipe_classes(accelerate):
        return {"outcome": "absent"}
    te_class = what in ("FP8RecipeKwargs", "TERecipeKwargs")
    if te_class and not unchecked:
        return {"outcome": "raised", "with_env": _te_missing(r), "without_env": _te_missing(r)}
    fields = {} if te_class else recipe_fields_from_env(accelerate, what, env or {})
    if fields is None:
        return dict(UNKNOWN)
    return {"outcome": "ok", "fields_changed_by_env": fields, "post_init": _te_missing(r) if te_class else None}


def llamafactory_sets_env(llamafactory: str | None) -> bool | None:
    """Whether this LLaMA-Factory sets ACCELERATE_MIXED_PRECISION=fp8 in its pt/sft Trainer (before the Accelerator
    is built) for `fp8: true`: 0.9.5 does, 0.9.4 does not (lab cells lf0.9.4/lf0.9.5-tf4.57-ao); None: unknown."""
    r = release(llamafactory)
    if r is None:
        return None
    return r >= (0, 9) and Version(str(llamafactory)).release[:3] >= (0, 9, 5)
