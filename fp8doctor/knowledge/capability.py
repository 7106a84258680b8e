"""Pure capability checks: each returns (supported, reason), the reason a sentence a user can act on.

The same functions feed the doctor's findings, the matrix's skipped cells and the pytest skip reasons.
"""

from __future__ import annotations

# Minimum compute capability per FP8 recipe family (Ada 8.9, Hopper 9.0, Blackwell 10.0).
FAMILY_MIN_CC: dict[str, tuple[int, int]] = {
    "per-tensor": (8, 9),
    "block": (9, 0),
    "mxfp8": (10, 0),
    "nvfp4": (10, 0),
}
# Transformer Engine's install line (its PyTorch extension builds against the installed torch).
TE_INSTALL = "pip install --no-build-isolation 'transformer-engine[pytorch]'"

FAMILY_LABEL = {
    "per-tensor": "per-tensor FP8 (delayed/current scaling, torchao tensorwise/rowwise)",
    "block": "FP8 block scaling",
    "mxfp8": "MXFP8 block scaling",
    "nvfp4": "NVFP4 block scaling",
}
# RunSpec recipe -> (TE recipe class, constructor kwargs by name of a Format member or plain values)
RECIPE_CLASSES = {
    "delayed_hybrid": ("DelayedScaling", {"fp8_format": "HYBRID"}),
    "delayed_e4m3": ("DelayedScaling", {"fp8_format": "E4M3"}),
    "current": ("Float8CurrentScaling", {}),
    "block": ("Float8BlockScaling", {}),
    "mxfp8": ("MXFP8BlockScaling", {}),
    "nvfp4": ("NVFP4BlockScaling", {}),
}
# Recipes Accelerate's TERecipeKwargs can express (it builds DelayedScaling, or MXFP8 with use_mxfp8_block_scaling).
ACCELERATE_RECIPES = {"delayed_hybrid", "delayed_e4m3", "mxfp8"}



def cc_str(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def fp8_family_supported(cc: tuple[int, int] | None, family: str) -> tuple[bool, str]:
    """Whether a GPU of compute capability `cc` (None: no CUDA GPU) can run an FP8 recipe family."""
    if family not in FAMILY_MIN_CC:
        raise ValueError(f"unknown FP8 recipe family {family!r}; expected one of {sorted(FAMILY_MIN_CC)}")
    need = FAMILY_MIN_CC[family]
    label = FAMILY_LABEL[family]
    if cc is None:
        return False, (
            f"No CUDA GPU is visible, so {label} cannot run on hardware; it needs compute capability "
            f"{cc_str(need)} or higher (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)."
        )
    if tuple(cc) < need:
        return False, (
            f"This GPU has compute capability {cc_str(tuple(cc))}, but {label} needs {cc_str(need)} or higher; "
            "use a newer GPU or train in bf16."
        )
    if family == "mxfp8" and tuple(cc) >= (12, 0):  # TE's own check since 2.6: 12.0 and above, not only 12.x
        return False, (
            f"MXFP8 is not supported by Transformer Engine on compute capability {cc_str(tuple(cc))} "
            "(12.0 and above, e.g. consumer Blackwell); use per-tensor FP8 there."
        )
    return True, f"Compute capability {cc_str(tuple(cc))} supports {label}."


def te_recipe_supported(cc: tuple[int, int] | None, recipe: str, te_version: str | None = None,
                        cuda: float | None = None) -> tuple[bool, str]:
    """Whether a TE recipe can run: the installed release must have its class, and TE's own conditions of that
    release (as observed in its source by the static TE lab) must hold for `cc` (and torch's CUDA when known).

    Without a TE version (TE not installed) this is the compute-capability check, which matches the newest release.
    """
    from fp8doctor.knowledge import te_releases

    family = te_recipe_family(recipe)
    observed = te_releases.release_for(te_version)
    if observed is None or cc is None:
        return fp8_family_supported(cc, family)
    cls = RECIPE_CLASSES[recipe][0]
    if cls not in te_releases.data()["te_releases"][observed]["recipes"]:
        first = te_releases.first_release_with_recipe(cls)
        return False, (f"Transformer Engine {te_version} has no transformer_engine.common.recipe.{cls} (first seen in "
                       f"TE {first}); upgrade: pip install 'transformer-engine[pytorch]>={first}'.")
    verdict = te_releases.support(observed, family, tuple(cc), cuda=cuda)
    if verdict is None:
        return fp8_family_supported(cc, family)
    if not verdict[0]:
        return False, f"Transformer Engine {te_version} says: {verdict[1]}"
    return True, (f"Compute capability {cc_str(tuple(cc))} meets Transformer Engine {te_version}'s conditions "
                  f"for {recipe}.")


def te_recipe_family(recipe: str) -> str:
    """The hardware family a Transformer Engine recipe name belongs to."""
    return {
        "delayed_hybrid": "per-tensor",
        "delayed_e4m3": "per-tensor",
        "current": "per-tensor",
        "block": "block",
        "mxfp8": "mxfp8",
        "nvfp4": "nvfp4",
    }[recipe]


def backend_available(backend: str, installed: dict[str, str | None], te_import_error: str | None = None
                      ) -> tuple[bool, str]:
    """Whether an FP8 backend can be used, from installed versions (name -> version or None)."""
    if backend == "torchao":
        if installed.get("torchao"):
            return True, f"torchao {installed['torchao']} is installed."
        return False, "torchao is not installed; install it with `pip install torchao`."
    if backend == "te":
        if not installed.get("transformer-engine") and not installed.get("transformer_engine"):
            return False, (
                f"Transformer Engine is not installed; on a CUDA machine install it with `{TE_INSTALL}`."
            )
        if te_import_error:
            return False, (
                f"Transformer Engine is installed but `transformer_engine.pytorch` fails to import: {te_import_error}"
            )
        return True, "Transformer Engine is installed and imports."
    if backend == "none":
        return True, "No FP8 backend is needed for a bf16 baseline."
    raise ValueError(f"unknown backend {backend!r}")


def accelerate_has_recipe(backend: str, accelerate_version: str | None) -> tuple[bool, str]:
    """Whether the installed Accelerate has a recipe handler for `backend` (Accelerate <= 1.3 has only
    FP8RecipeKwargs, for Transformer Engine or MS-AMP; torchao arrived with AORecipeKwargs in 1.4)."""
    from fp8doctor.knowledge.generations import accelerate_generation, first_accelerate

    if backend != "torchao" or not accelerate_version:
        return True, "no Accelerate recipe class is needed" if backend != "torchao" else "accelerate is not installed"
    classes = accelerate_generation(accelerate_version).get("recipe_classes")
    if classes is None or "AORecipeKwargs" in classes:
        return True, f"accelerate {accelerate_version} has AORecipeKwargs."
    return False, (f"accelerate {accelerate_version} has no torchao path (no AORecipeKwargs, no accelerate.utils.ao: "
                   f"its only recipe class is FP8RecipeKwargs, for Transformer Engine or MS-AMP); torchao FP8 "
                   f"through Accelerate needs accelerate>={first_accelerate('AORecipeKwargs')}.")


def offered_recipes(te_version: str | None) -> tuple[str, ...]:
    """The recipes a TE release has (from the static TE lab's observations); all of them when TE is absent."""
    from fp8doctor.knowledge import te_releases

    observed = te_releases.release(te_version)
    if observed is None:
        return tuple(RECIPE_CLASSES)
    return tuple(r for r, (cls, _) in RECIPE_CLASSES.items() if cls in observed["recipes"])
