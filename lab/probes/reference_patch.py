"""The reference report's two ways of patching a recipe into Accelerator.__init__, under a real Trainer.

`inject_if_missing` adds kwargs_handlers=[recipe] only when the caller passed none (the report's code);
`always_append` appends the recipe to whatever the caller passed. The recipe is AORecipeKwargs (torchao, emulated
on CPU) where the release has it, else FP8RecipeKwargs built without its __post_init__ (which refuses without TE or
MS-AMP installed; it stands for the recipe a TE user passes).
"""

from __future__ import annotations

from _common import describe_exception, fp8_layers, main, state_facts
from _trainer import TinyRegressor, spy_accelerator_init, tiny_dataset, training_args


def make_recipe():
    import accelerate.utils as au

    if hasattr(au, "AORecipeKwargs"):
        try:
            from torchao.float8 import Float8LinearConfig
        except ImportError:
            return au.AORecipeKwargs()
        return au.AORecipeKwargs(config=Float8LinearConfig(emulate=True))
    from accelerator import unchecked

    return unchecked(au.FP8RecipeKwargs)


def patch_for(form: str):
    def inject_if_missing(kwargs: dict) -> None:
        if "kwargs_handlers" not in kwargs:
            kwargs["kwargs_handlers"] = [make_recipe()]

    def always_append(kwargs: dict) -> None:
        kwargs["kwargs_handlers"] = list(kwargs.get("kwargs_handlers") or []) + [make_recipe()]

    return {"inject_if_missing": inject_if_missing, "always_append": always_append}[form]


def run_case(case: dict) -> dict:
    from transformers import Trainer

    calls: list = []
    result: dict = {}
    try:
        args = training_args(case["bf16"])
        spy_accelerator_init(calls, patch_for(case["form"]))
        model = TinyRegressor()
        trainer = Trainer(model=model, args=args, train_dataset=tiny_dataset())
    except Exception as exc:  # noqa: BLE001
        return {**describe_exception(exc), "stage": "Trainer", "accelerator_calls": calls}
    result.update(state_facts(trainer.accelerator))
    result["accelerator_calls"] = calls
    try:
        trainer.train()
    except Exception as exc:  # noqa: BLE001
        return {**result, **describe_exception(exc), "stage": "train", "fp8_layers": fp8_layers(model)}
    layers = fp8_layers(model)
    result["recipe"] = [h for call in calls for h in call.get("passed_on", {}).get("kwargs_handlers") or []]
    verdict = "fp8" if layers else f"silent {result.get('mixed_precision')}"
    return {**result, "outcome": "ok", "fp8_layers": layers, "verdict": verdict}


def cases() -> list[dict]:
    out = []
    for form in ("inject_if_missing", "always_append"):
        for env_mp in (None, "fp8"):
            env = {} if env_mp is None else {"ACCELERATE_MIXED_PRECISION": env_mp}
            out.append({"form": form, "bf16": True, "env": env})
        out.append({"form": form, "bf16": False, "env": {"ACCELERATE_MIXED_PRECISION": "fp8"}})
    return out


if __name__ == "__main__":
    main(cases(), run_case, ("accelerate", "accelerate.utils", "transformers", "transformers.trainer",
                             "torchao.float8"))
