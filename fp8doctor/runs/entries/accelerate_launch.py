"""`accelerate launch --config_file <yaml> script.py`: FP8 switched on by an Accelerate config file
(`mixed_precision: fp8` + `fp8_config`), the script itself calling plain `Accelerator()`.

Without spec.config_file a config is written for the spec (backend, recipe, CPU or GPU, spec.nproc processes);
with one, the user's file is used as is. On CPU a multi-process config is launched with ACCELERATE_USE_CPU=true.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from fp8doctor.knowledge.optimizer_params import ALL_GATHER, ALL_GATHER_VAR
from fp8doctor.knowledge.predict import flag_true
from fp8doctor.runs.entries.common import Context
from fp8doctor.runs.entries.launcher import RANK_SCRIPT, launch, python, work_dir, write_spec
from fp8doctor.runs.spec import RunSpec

NAMES = ("launch",)
LAUNCHES_PROCESSES = True  # the worker skips importing torch; the ranks do it


def accelerate_config(spec: RunSpec, device: str) -> dict[str, Any]:
    """The Accelerate config this entry writes for a spec run on `device` (repro's expectations read it too)."""
    cpu = device == "cpu"
    multi = spec.nproc > 1
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        # MULTI_CPU would start one process (Accelerate's simple launcher fans out only through mpirun); a
        # MULTI_GPU config goes through torchrun, and ACCELERATE_USE_CPU=true makes the ranks MULTI_CPU/gloo.
        "distributed_type": "MULTI_GPU" if multi else "NO",
        "mixed_precision": spec.mixed_precision if spec.backend != "none" else "bf16",
        "num_machines": 1,
        "num_processes": spec.nproc,
        "machine_rank": 0,
        "use_cpu": cpu,
    }
    if spec.backend == "torchao":
        cfg["fp8_config"] = {"backend": "AO"}
        # A spec that sets the variable `accelerate launch` exports from this key gets the key in its file: from
        # 1.13 the launcher exports its own default (true) over a variable it inherits.
        flag = spec.env.get(ALL_GATHER_VAR)
        if flag is not None:
            cfg["fp8_config"][ALL_GATHER] = flag_true(flag)
    elif spec.backend == "te":
        from fp8doctor.runs.backends.te import handler_kwargs

        te = handler_kwargs(spec.recipe)
        cfg["fp8_config"] = {"backend": "TE", **({"fp8_format": te["fp8_format"]} if "fp8_format" in te else {})}
    return cfg


def run(ctx: Context) -> None:
    out_dir = work_dir()
    spec_path = write_spec(ctx, out_dir)
    config_file = ctx.spec.config_file
    if not config_file:
        config_file = os.path.join(out_dir, "accelerate_config.yaml")
        with open(config_file, "w", encoding="utf-8") as fh:
            yaml.safe_dump(accelerate_config(ctx.spec, ctx.device), fh, sort_keys=False)
    with open(config_file, encoding="utf-8") as fh:
        ctx.result["accelerate_config"] = yaml.safe_load(fh)
    ctx.result["accelerate_config_file"] = config_file
    cmd = [python(), "-m", "accelerate.commands.launch", "--config_file", config_file, RANK_SCRIPT, spec_path, out_dir,
           "config"]
    shown = f"accelerate launch --config_file {config_file} fp8doctor/runs/entries/rank_script.py"
    env = dict(os.environ)
    nproc = int((ctx.result["accelerate_config"] or {}).get("num_processes") or 1)
    if ctx.device == "cpu" and nproc > 1:
        env["ACCELERATE_USE_CPU"] = "true"
        env["OMP_NUM_THREADS"] = "1"
        shown = "ACCELERATE_USE_CPU=true " + shown
    launch(ctx, cmd, env, out_dir, shown)
