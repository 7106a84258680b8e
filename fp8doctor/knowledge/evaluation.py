"""Whether evaluation and generation still run in FP8 after Accelerate prepared the model, per backend.

- torchao (`AORecipeKwargs`): Accelerate swaps the Linear layers for `Float8Linear`, which casts to FP8 in every
  forward, in `model.eval()` and under `torch.no_grad()` too. Observed by the lab's `eval_fp8` probe (the same
  Float8Linear count and an FP8-changed output in train and eval mode) on accelerate 1.7, 1.9 and 1.15.
- Transformer Engine (`TERecipeKwargs`, `FP8RecipeKwargs` up to 1.3): Accelerate replaces `model.forward` by one
  that enters TE's `fp8_autocast(enabled=use_autocast_during_eval or model.training)`, so evaluation runs the TE
  layers without FP8 unless the handler sets `use_autocast_during_eval=True` (default False). Every release the
  static TE lab read (accelerate 1.1-1.15, lab/observations/accelerate_te) has that field and pops it before the
  recipe is built; TE cannot run on the lab's machines, so the run-time effect is Accelerate's source, not a run.
"""

from __future__ import annotations

from typing import Any

EVAL_OPTION = "use_autocast_during_eval"
AO_EVAL_OBSERVED = ("1.7", "1.9", "1.15")


def eval_in_fp8(backend: str | None) -> dict[str, Any]:
    """{fp8: True/False/None (unknown), reason, fix (None or a sentence)} for evaluation after prepare() with the
    backend's default recipe (`watch` reads the backend, not the handler's fields)."""
    if backend == "AO":
        return {"fp8": True, "fix": None,
                "reason": "torchao's Float8Linear casts to FP8 in every forward, evaluation included"}
    if backend == "TE":
        return {"fp8": False,
                "reason": "Accelerate enters TE's fp8_autocast only while model.training, unless the recipe handler "
                          f"sets {EVAL_OPTION}",
                "fix": f"pass TERecipeKwargs({EVAL_OPTION}=True) (FP8RecipeKwargs(backend='te', {EVAL_OPTION}=True) "
                       "on accelerate <= 1.3) to evaluate in FP8"}
    return {"fp8": None, "fix": None, "reason": f"no FP8 backend ({backend!r}): nothing to evaluate in FP8"}
