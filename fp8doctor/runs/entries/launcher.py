"""Start a real launcher on rank_script.py, wait for it, and merge the per-rank results into the worker's result."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from fp8doctor.runs import handoff
from fp8doctor.runs.entries.common import Context

RANK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rank_script.py")
MERGED_KEYS = ("accelerator", "fp8_layers", "eligible_layers", "eligibility_rule", "forwards", "fp8_active",
               "losses", "grad_norms", "numerics", "step_times_s", "tokens_per_s", "peak_mem_bytes", "device",
               "emulated", "wrapper", "compiled", "outside_optimizer", "checkpoint")


def work_dir() -> str:
    base = os.environ.get("FP8DOCTOR_RUN_DIR")
    return tempfile.mkdtemp(prefix="launch-", dir=base if base and os.path.isdir(base) else None)


def launch(ctx: Context, cmd: list[str], env: dict[str, str], out_dir: str, shown_cmd: str) -> None:
    """Run the launcher command; raise RuntimeError when no rank reported, re-raise rank 0's error as a result."""
    ctx.result["launcher"] = {"command": shown_cmd, "launcher_env": {k: v for k, v in env.items()
                                                            if k.startswith(("ACCELERATE_", "FP8DOCTOR_AO"))}}
    timeout = max(30.0, ctx.spec.timeout_s - 10.0)
    env = {**env, **handoff.env_for_children()}
    log = os.path.join(out_dir, "launcher.log")
    launched = time.time()
    with open(log, "wb") as out, open(os.devnull, "rb") as devnull:
        proc: Any = handoff.start(cmd[1:], env, (devnull.fileno(), out.fileno(), out.fileno())) \
            if cmd[0] == sys.executable and handoff.env_for_children() else None
        ctx.result["launcher"]["warm"] = proc is not None
        if proc is None:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=devnull)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    ended = time.time()
    with open(log, "rb") as fh:  # only its tail is ever shown
        fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4000))
        output = fh.read().decode("utf-8", "replace")
    ranks = []
    for path in sorted(glob.glob(os.path.join(out_dir, "rank*.json")), key=lambda p: int(p.rsplit("rank", 1)[1][:-5])):
        with open(path, encoding="utf-8") as fh:
            ranks.append(json.load(fh))
    ctx.result["launcher"]["returncode"] = proc.returncode
    ctx.result["launcher"]["processes_started"] = len(ranks)
    if not ranks:
        raise RuntimeError(f"the launcher exited with code {proc.returncode} and no rank wrote a result; "
                           f"output tail: {output[-1500:]}")
    ctx.result["ranks"] = ranks
    clocks = [r["clock"] for r in ranks if isinstance(r.get("clock"), dict)]
    if clocks:  # what the launcher itself cost: before its first rank started, after its last rank ended
        ctx.timing("launcher_start", min(c["started"] for c in clocks) - launched)
        ctx.timing("launcher_end", ended - max(c["ended"] for c in clocks))
    first = ranks[0]
    for key in MERGED_KEYS:
        if key in first:
            ctx.result[key] = first[key]
    for note in first.get("notes", []):
        ctx.note(note)
    failed = [r for r in ranks if r.get("outcome") != "finished"]
    if failed:
        ctx.result["outcome"] = "raised"
        ctx.result["error"] = dict(failed[0]["error"], rank=failed[0].get("rank"))
    elif proc.returncode != 0:
        raise RuntimeError(f"the launcher exited with code {proc.returncode} although every rank finished; "
                           f"output tail: {output[-1500:]}")


def write_spec(ctx: Context, out_dir: str) -> str:
    path = os.path.join(out_dir, "spec.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(ctx.spec.to_dict(), fh)
    return path


def python() -> str:
    return sys.executable
