"""The training script the launch and multiproc entries start under a real launcher (one copy per rank).

    python rank_script.py SPEC_JSON OUT_DIR MODE

MODE "config": `Accelerator()` with no arguments, as a script run by `accelerate launch --config_file` is
written: mixed precision and the FP8 backend come from the launcher (a non-default torchao recipe is passed as
a handler, still without a mixed_precision argument). MODE "explicit": `Accelerator(mixed_precision=...,
kwargs_handlers=[recipe])`. MODE "fsdp2" / "deepspeed": the Accelerator with that plugin
(runs/entries/plugins.py). Each rank writes OUT_DIR/rank<N>.json (the worker's result keys) and exits 1 if its
run raised.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    started = time.time()  # the launcher entry measures its launcher's start-up and tear-down from the ranks' clocks
    from fp8doctor.runs.handoff import continue_warm_or_here

    continue_warm_or_here()  # under fp8doctor's warm server this rank is forked there, as it is, and ends here
    spec_path, out_dir, mode = argv
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    from fp8doctor.runs.worker import base_result, write_json

    with open(spec_path, encoding="utf-8") as fh:
        spec_dict = json.load(fh)
    result = base_result(spec_dict)
    result["rank"] = rank
    from fp8doctor.runs import handoff

    result["warm"] = handoff.served  # forked by the warm server (True) or this fresh interpreter (False)
    t0 = time.perf_counter()
    rc = 0
    try:
        run(spec_dict, result, mode)
        result["outcome"] = "finished"
    except BaseException as exc:  # noqa: BLE001 - a rank's failure is its result
        from fp8doctor.runs.entries.common import describe_exception

        result["outcome"] = "raised"
        result["error"] = describe_exception(exc)
        rc = 1
    result["timings_s"]["total"] = round(time.perf_counter() - t0, 4)
    result["clock"] = {"started": started, "ended": time.time()}
    result["launcher_env"] = {k: v for k, v in os.environ.items()
                              if k.startswith(("ACCELERATE_", "WORLD_SIZE", "LOCAL_WORLD_SIZE"))}
    write_json(os.path.join(out_dir, f"rank{rank}.json"), result)
    return rc


def run(spec_dict: dict, result: dict, mode: str) -> None:
    from fp8doctor.runs.entries.common import Context, accelerate_training, resolve_device
    from fp8doctor.runs.spec import RunSpec

    spec = RunSpec.from_dict(spec_dict)
    emulate = False
    from fp8doctor.runs.backends.torchao import emulation_requested

    if spec.backend == "torchao" and emulation_requested():
        from fp8doctor.runs.backends.torchao import enable_cpu_emulation

        enable_cpu_emulation()
        emulate = True
    ctx = Context(spec=spec, device=resolve_device(spec), result=result, emulate=emulate)
    from accelerate import Accelerator

    from fp8doctor.runs.backends import needs_recipe_handler, recipe_handler

    if mode in ("fsdp2", "deepspeed"):
        from fp8doctor.runs.entries.plugins import ACCELERATORS

        accelerate_training(ctx, lambda: ACCELERATORS[mode](ctx))
    elif mode == "config":
        handlers = []
        if needs_recipe_handler(spec.backend, spec.recipe):
            handlers = [recipe_handler(spec.backend, spec.recipe, ctx.emulate)]
        accelerate_training(ctx, lambda: Accelerator(kwargs_handlers=handlers))
    else:
        handler = recipe_handler(spec.backend, spec.recipe, ctx.emulate)
        accelerate_training(ctx, lambda: Accelerator(mixed_precision=spec.mixed_precision,
                                                     kwargs_handlers=[handler] if handler else []))
    result["device"] = ctx.device


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
