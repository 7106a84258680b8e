"""Accelerator(mixed_precision=...) x ACCELERATE_MIXED_PRECISION x recipe handler x ACCELERATE_FP8_BACKEND."""

from __future__ import annotations

from _common import describe_exception, fp8_layers, main, prepare_tiny, state_facts

UNCHECKED = "[unchecked]"
INVALID_BACKEND = "TRANSFORMER_ENGINE"  # what a user might write for TE; not a member of FP8BackendType
HANDLER_ATTRS = ("fp8_recipe_handler", "ao_recipe_handler", "te_recipe_handler", "msamp_recipe_handler")


def unchecked(cls):
    """An instance with the dataclass defaults, skipping __post_init__ (which demands TE/MS-AMP be installed):
    it stands for a handler a user with TE builds, so the Accelerator's own checks can be observed on CPU."""
    import dataclasses

    obj = cls.__new__(cls)
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            setattr(obj, f.name, f.default)
        elif f.default_factory is not dataclasses.MISSING:
            setattr(obj, f.name, f.default_factory())
        else:
            setattr(obj, f.name, None)
    return obj


def build_handler(name: str):
    import accelerate.utils as au

    cls = getattr(au, name.removesuffix(UNCHECKED), None)
    if cls is None:
        return "absent", None
    if name.endswith(UNCHECKED):
        return "built", unchecked(cls)
    if name == "AORecipeKwargs":
        try:
            from torchao.float8 import Float8LinearConfig
        except ImportError:
            return "built", cls()
        return "built", cls(config=Float8LinearConfig(emulate=True))
    return "built", cls()


def handlers_held(accelerator) -> dict:
    held = {}
    for attr in HANDLER_ATTRS:
        value = getattr(accelerator, attr, None)
        if value is not None:
            held[attr] = type(value).__name__
    return held


def run_case(case: dict) -> dict:
    from accelerate import Accelerator

    kwargs: dict = {}
    if case["mp_arg"] is not None:
        kwargs["mixed_precision"] = case["mp_arg"]
    if case["handler"] is not None:
        try:
            status, handler = build_handler(case["handler"])
        except Exception as exc:  # noqa: BLE001 - construction failure is an outcome
            return {**describe_exception(exc), "stage": "handler"}
        if status == "absent":
            return {"outcome": "absent", "stage": "handler"}
        kwargs["kwargs_handlers"] = [handler]
    try:
        accelerator = Accelerator(**kwargs)
    except Exception as exc:  # noqa: BLE001
        return {**describe_exception(exc), "stage": "init"}
    facts = {**state_facts(accelerator), "handlers_held": handlers_held(accelerator)}
    model, _, refused = prepare_tiny(accelerator, facts)
    if refused:
        return refused
    return {"outcome": "ok", **facts, "fp8_layers": fp8_layers(model)}


def cases() -> list[dict]:
    out: list[dict] = []

    def add(mp_arg, env_mp, handler, backend=None):
        env = {}
        if env_mp is not None:
            env["ACCELERATE_MIXED_PRECISION"] = env_mp
        if backend is not None:
            env["ACCELERATE_FP8_BACKEND"] = backend
        case = {"mp_arg": mp_arg, "handler": handler, "env": env}
        if case not in out:
            out.append(case)

    for mp_arg in (None, "no", "bf16", "fp8"):
        for env_mp in (None, "bf16", "fp8"):
            for handler in (None, "AORecipeKwargs", "FP8RecipeKwargs"):
                add(mp_arg, env_mp, handler)
    for handler in ("TERecipeKwargs", "MSAMPRecipeKwargs"):
        for mp_arg, env_mp in ((None, "fp8"), ("fp8", None), ("bf16", None)):
            add(mp_arg, env_mp, handler)
    for handler in ("FP8RecipeKwargs" + UNCHECKED, "TERecipeKwargs" + UNCHECKED):
        for mp_arg, env_mp in ((None, "fp8"), ("fp8", None), ("bf16", None), (None, None)):
            add(mp_arg, env_mp, handler)
    for env_mp in ("Fp8", "FP8 "):
        for handler in (None, "AORecipeKwargs"):
            add(None, env_mp, handler)
    for backend in ("AO", "ao"):
        add(None, "fp8", None, backend)
        add("fp8", None, None, backend)
        add(None, "fp8", "AORecipeKwargs", backend)
    # every other value Accelerate's FP8BackendType knows, and one it does not: no handler, fp8 by either route,
    # so the library's own message for each is recorded
    for backend in ("TE", "MSAMP", "NO", INVALID_BACKEND):
        add(None, "fp8", None, backend)
        add("fp8", None, None, backend)
    return out


if __name__ == "__main__":
    main(cases(), run_case, ("accelerate", "accelerate.utils", "torchao.float8"))
