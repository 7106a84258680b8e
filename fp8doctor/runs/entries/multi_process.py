"""Two (spec.nproc) processes, each `Accelerator(mixed_precision="fp8", kwargs_handlers=[recipe])`.

On CPU the ranks are started by torchrun with ACCELERATE_USE_CPU=true (Accelerate sees MULTI_CPU over gloo):
`accelerate launch --cpu --num_processes 2` starts a single process unless an MPI hostfile is given, because its
simple launcher only fans out through mpirun. On GPUs `accelerate launch --multi_gpu` is used.
"""

from __future__ import annotations

import os
import socket

from fp8doctor.runs.entries.common import Context
from fp8doctor.runs.entries.launcher import RANK_SCRIPT, launch, python, work_dir, write_spec

NAMES = ("multiproc",)
LAUNCHES_PROCESSES = True  # the worker skips importing torch; the ranks do it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(ctx: Context) -> None:
    launch_ranks(ctx, "explicit")


def launch_ranks(ctx: Context, mode: str) -> None:
    """spec.nproc (at least 2) ranks of rank_script.py in `mode` under torchrun (CPU) or accelerate launch."""
    nproc = max(2, ctx.spec.nproc)
    out_dir = work_dir()
    spec_path = write_spec(ctx, out_dir)
    env = dict(os.environ)
    port = str(free_port())
    if ctx.device == "cpu":
        env["ACCELERATE_USE_CPU"] = "true"
        env["OMP_NUM_THREADS"] = "1"
        cmd = [python(), "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", port,
               RANK_SCRIPT, spec_path, out_dir, mode]
        shown = f"ACCELERATE_USE_CPU=true torchrun --nproc_per_node {nproc} fp8doctor/runs/entries/rank_script.py"
    else:
        cmd = [python(), "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(nproc),
               "--main_process_port", port, RANK_SCRIPT, spec_path, out_dir, mode]
        shown = f"accelerate launch --multi_gpu --num_processes {nproc} fp8doctor/runs/entries/rank_script.py"
    launch(ctx, cmd, env, out_dir, shown)
