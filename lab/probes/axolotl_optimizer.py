"""axolotl's own FP8 Accelerator arguments and the optimizer: `AxolotlTrainer.additional_accelerator_args(fp8=True,
enable_fsdp_float8_all_gather=X)` (what axolotl's trainer passes to the Accelerator: mixed_precision fp8 and an
AORecipeKwargs holding its build_fp8_linear_config), then `prepare(model, optimizer)` of the tiny model and two SGD
steps exactly as the optimizer_params probe does. X: None (what axolotl's config gives when
`fp8_enable_fsdp_float8_all_gather` is not set), False, True; no FSDP. CPU: `torch._scaled_mm` runs here.

    python lab/probes/axolotl_optimizer.py   (in a cell with axolotl)   -> {"cases": [...]}
"""

from __future__ import annotations

from _common import describe_exception, main
from optimizer_params import trained

CASES: list[dict] = [{"all_gather": value, "env": {}} for value in (None, False, True)]


def observe(case: dict) -> dict:
    from accelerate import Accelerator
    from axolotl.core.trainers.base import AxolotlTrainer

    try:
        kwargs = AxolotlTrainer.additional_accelerator_args(None, fp8=True,
                                                            enable_fsdp_float8_all_gather=case["all_gather"])
        accelerator = Accelerator(**kwargs)
    except Exception as exc:  # noqa: BLE001 - a release that refuses the setup is the observation
        return {**describe_exception(exc), "stage": "init"}
    return {"accelerator_kwargs": sorted(kwargs), "mixed_precision_arg": kwargs.get("mixed_precision"),
            **trained(accelerator)}


if __name__ == "__main__":
    main(CASES, observe, ("accelerate", "accelerate.utils", "torchao.float8", "axolotl.core.trainers.base"))
