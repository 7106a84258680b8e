"""Accelerate's distributed plugins (FSDP1, FSDP2, DeepSpeed ZeRO-2/3) with and without FP8 (torchao, emulate),
two ranks under torchrun over gloo on CPU, per case (see _dist_rank.py for what one rank records).

Cases: FSDP2 with FP8 and `ACCELERATE_USE_CPU=true` (what the state does with a plugin on CPU; the first run of
the lab saw FSDP1 and DeepSpeed-ZeRO-2 plugins dropped the same way on accelerate 1.6); the FSDP plugins with the
state set as a GPU run's state is (`force_state`), FP8 with and without float8 all-gather, to observe
Accelerate's own prepare (order of conversion and wrapping, raises); the DeepSpeed ZeRO-2 plugin without
`ACCELERATE_USE_CPU` (Accelerate then selects DeepSpeed; DeepSpeed picks its CPU accelerator), bf16 and FP8.
DeepSpeed's CPU communication op is built first; each DeepSpeed case records how that went (`deepspeed_op_build`).
Opt-in: runs only in the cells of lab/cells_dist.yaml.
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import subprocess
import sys
import tempfile

RANK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_dist_rank.py")
CASE_TIMEOUT_S = 160
SUMMARY = ("outcome", "stage", "type", "message", "where", "distributed_type", "mixed_precision", "fp8_backend",
           "num_processes", "state_forced", "order", "prepared_class", "fp8_layers", "units", "fp8_inside_units",
           "float8_all_gather")


def cases() -> list[dict]:
    out = [{"plugin": "fsdp2", "precision": "fp8", "use_cpu": True}]
    for plugin in ("fsdp1", "fsdp2"):
        for gather in (False, True):
            out.append({"plugin": plugin, "precision": "fp8", "use_cpu": True, "force_state": True,
                        "all_gather": gather})
    out += [{"plugin": "deepspeed-z2", "precision": precision, "use_cpu": False} for precision in ("bf16", "fp8")]
    return out


def extensions_dir() -> str:
    """One torch-extensions folder per cell: the JIT build flags name the cell's paths, so cells sharing one
    folder would rebuild DeepSpeed's op in turn."""
    lab_cache = os.environ.get("FP8DOCTOR_LAB_CACHE") or os.path.expanduser("~/.cache/fp8doctor-lab")
    return os.path.join(lab_cache, "torch_extensions", os.path.basename(sys.prefix))


def build_deepspeed_op() -> dict:
    """Build DeepSpeed's CPU communication op once before the cases (minutes on a loaded CPU), so no case's
    timeout measures the compiler."""
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=extensions_dir())
    code = ("from deepspeed.accelerator import get_accelerator\n"
            "b = get_accelerator().create_op_builder('ShareMemCommBuilder')\n"
            "print(b is not None and b.load() is not None)")
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"outcome": "timeout"}
    return {"outcome": "ok" if proc.returncode == 0 else "failed"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hang_frame(text: str) -> str | None:
    """The innermost library frame of the main thread in a faulthandler dump."""
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', text.split("\n\n")[-1] if text else "")
    lib = [f for f in frames if "site-packages" in f[0]]
    if not lib:
        return None
    path, _, func = lib[0]  # faulthandler lists the innermost frame first
    return f"{path.split('site-packages/')[-1]}:{func}"


def run_case(case: dict) -> dict:
    with tempfile.TemporaryDirectory() as out_dir:
        env = dict(os.environ)
        if case["use_cpu"]:
            env["ACCELERATE_USE_CPU"] = "true"
        env["TORCH_EXTENSIONS_DIR"] = extensions_dir()  # DeepSpeed's CPU communication op, built once
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_port()), RANK, json.dumps(case), out_dir]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CASE_TIMEOUT_S,
                                  cwd=out_dir)
            returncode: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = None
        ranks = []
        for path in sorted(glob.glob(os.path.join(out_dir, "rank*.json"))):
            with open(path) as fh:
                ranks.append(json.load(fh))
        hangs = []
        for path in sorted(glob.glob(os.path.join(out_dir, "hang*.txt"))):
            with open(path) as fh:
                frame = _hang_frame(fh.read())
            if frame:
                hangs.append(frame)
    if not ranks:
        return {"outcome": "hung" if hangs or returncode is None else "crashed", "returncode": returncode,
                "hung_at": sorted(set(hangs))}
    first = {k: ranks[0][k] for k in SUMMARY if k in ranks[0]}
    first["ranks_reported"] = len(ranks)
    first["ranks_agree"] = all({k: r.get(k) for k in SUMMARY} == {k: ranks[0].get(k) for k in SUMMARY}
                               for r in ranks)
    return first


def main() -> None:
    built = build_deepspeed_op()["outcome"]
    results = [{"inputs": case, **run_case(case)} for case in cases()]
    for result in results:
        if result["inputs"]["plugin"].startswith("deepspeed"):
            result["deepspeed_op_build"] = built
    json.dump({"cases": results}, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
