"""Thresholds for the FP8 numerics `fp8doctor watch --numerics` samples, each from a library's own tests.

- SQNR of an FP8 matmul output against the high-precision one: torchao's float8 tests require at least 25 dB for a
  single float8 GEMM (torchao `test/float8`: `assert sqnr >= 25.0`; its MoE test: "a single fp8 gemm uses
  SQNR >= 25.0 for testing"), computed as torchao's `float8_utils.compute_error`. A layer below it is named as a
  candidate to keep in bf16.
- The same threshold for Transformer Engine `Linear` layers: it is a property of a tensorwise FP8 GEMM's output, not
  of the library that ran it (TE's own tests compare FP8 outputs with per-recipe tolerances, not an SQNR).
- NVFP4 (TE's `NVFP4BlockScaling`, a 4-bit format) is reported, not judged: the threshold is one of FP8 GEMMs.
- Underflow and saturation shares are reported, not judged: TE's debug tools (LogFp8TensorStats) report underflow
  % without a pass/fail line, and neither library tests one.
"""

from __future__ import annotations

SQNR_MIN_DB = 25.0
SQNR_SOURCE = "torchao's float8 tests require SQNR >= 25 dB for a single float8 GEMM"
NOT_JUDGED_RECIPES = ("NVFP4BlockScaling",)  # the recipe a TE layer's sample ran under (fp8doctor.numerics)
DEFAULT_EVERY = 20  # sample each FP8 layer's forward once every this many of its calls


def keep_in_bf16_config(names: dict[str, list[str]]) -> dict[str, str]:
    """How to keep these layers ({backend: names}) in bf16, per path, first the one a single line shows: for
    torchao layers keeping each path's own filter (Accelerate's first/last and multiple-of-16 rule:
    `filter_linear_layers` and `find_first_last_linear_layers` exist in accelerate 1.6-1.16); for Transformer Engine
    layers TE's own way of running a module outside FP8 inside the model's FP8 region, with the context manager of
    each TE generation the static TE lab read (not run here: TE needs a GPU)."""
    from fp8doctor.knowledge import te_releases

    out: dict[str, str] = {}
    if names.get("torchao"):
        shown = ", ".join(repr(n) for n in names["torchao"])
        out["accelerate"] = ("AORecipeKwargs(config=..., module_filter_func=functools.partial("
                             "accelerate.utils.ao.filter_linear_layers, layers_to_filter=["
                             f"*accelerate.utils.ao.find_first_last_linear_layers(model), {shown}]))")
        out["torchao"] = ("convert_to_float8_training(model, module_filter_fn=lambda module, fqn: "
                          f"fqn not in {{{shown}}})")
    if names.get("te"):
        shown = ", ".join(repr(n) for n in names["te"])
        since = te_releases.first_release_with_autocast("autocast")
        out["transformer_engine"] = (
            f"run the forward of {shown} inside `with transformer_engine.pytorch.autocast(enabled=False):` "
            f"(`fp8_autocast(enabled=False)` before TE {since}) in the model's code; TE form, not run here: "
            "TE needs a GPU")
    return out
