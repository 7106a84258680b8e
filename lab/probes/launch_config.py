"""`accelerate launch` (and plain python) against Accelerate config files: accepted or rejected, which ACCELERATE_*
variables the launched script sees, and what its Accelerator() does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from _common import main, without_paths

PROBES = Path(__file__).resolve().parent
LAUNCH_TIMEOUT_S = 240

TE_REFERENCE = {"mixed_precision": "fp8", "fp8_config": {"backend": "TE", "fp8_format": "HYBRID",
                                                         "amax_compute_algo": "max", "amax_history_len": 1024}}
AO_KEYS = {"backend": "AO", "fp8_format": "E4M3", "amax_history_len": 16, "amax_compute_algo": "most_recent",
           "margin": 1, "interval": 2, "override_linear_precision": [False, False, False], "opt_level": "O2",
           "pad_inner_dim": True, "enable_fsdp_float8_all_gather": False, "use_autocast_during_eval": True,
           "use_mxfp8_block_scaling": True}
GENERATED_HEAD = {"compute_environment": "LOCAL_MACHINE", "debug": False, "distributed_type": "NO",
                  "downcast_bf16": "no", "machine_rank": 0, "main_training_function": "main", "num_machines": 1,
                  "num_processes": 1, "rdzv_backend": "static", "same_network": True, "use_cpu": False}
DEFAULT_AO = {"distributed_type": "NO", "mixed_precision": "fp8", "fp8_config": {"backend": "AO"}}

CONFIGS: dict[str, dict] = {
    "reference_te_no_distributed_type": TE_REFERENCE,
    "reference_te_distributed_type_NO": {"distributed_type": "NO", **TE_REFERENCE},
    "ao_distributed_type_NO": DEFAULT_AO,
    "ao_every_fp8_key": {"distributed_type": "NO", "mixed_precision": "fp8", "fp8_config": AO_KEYS},
    "generated_style_ao": {**GENERATED_HEAD, "mixed_precision": "fp8", "fp8_config": {"backend": "AO"}},
}


def accelerate_cli() -> list[str]:
    script = Path(sys.executable).parent / "accelerate"
    if script.exists():
        return [str(script)]
    found = shutil.which("accelerate")
    return [found] if found else [sys.executable, "-m", "accelerate.commands.accelerate_cli"]


def parse(proc: subprocess.CompletedProcess) -> dict:
    import json

    for line in proc.stdout.splitlines():
        if line.startswith("LAB-RESULT "):
            return {"launched": json.loads(line[len("LAB-RESULT "):])}
    lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
    errors = [ln.strip() for ln in lines if "Error" in ln or "error" in ln]
    return {"launched": None, "returncode": proc.returncode,
            "error_line": without_paths(errors[-1] if errors else (lines[-1].strip() if lines else ""))}


def run_case(case: dict) -> dict:
    tmp = Path(os.getcwd())
    hf_home = tmp / "hf"
    (hf_home / "accelerate").mkdir(parents=True)
    env = dict(os.environ)
    env["HF_HOME"] = str(hf_home)
    env.pop("PYTHONPATH", None)
    script = str(PROBES / "_launched.py")
    how = case["how"]
    cmd: list[str]
    if "config" in case:
        path = tmp / "accelerate_fp8.yaml"
        path.write_text(yaml.safe_dump(CONFIGS[case["config"]], sort_keys=False))
        if case.get("where") == "default_location":
            path = hf_home / "accelerate" / "default_config.yaml"
            path.write_text(yaml.safe_dump(CONFIGS[case["config"]], sort_keys=False))
        if case.get("where") == "ACCELERATE_CONFIG_FILE":
            env["ACCELERATE_CONFIG_FILE"] = str(path)
    if how == "launch --config_file":
        cmd = [*accelerate_cli(), "launch", "--config_file", str(tmp / "accelerate_fp8.yaml"), script]
    elif how == "launch":
        cmd = [*accelerate_cli(), "launch", script]
    else:
        cmd = [sys.executable, script]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp), timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"outcome": "timeout", "timeout_s": LAUNCH_TIMEOUT_S}
    observed = parse(proc)
    observed["outcome"] = "launched" if observed["launched"] is not None else "rejected"
    if observed["launched"] is not None:
        seen = observed["launched"]["accelerate_env"]
        if "ACCELERATE_CONFIG_FILE" in seen:
            seen["ACCELERATE_CONFIG_FILE"] = "<the probe's config path>"
    return observed


def cases() -> list[dict]:
    out: list[dict] = [{"how": "launch --config_file", "config": name, "env": {}} for name in CONFIGS]
    for where in ("default_location", "ACCELERATE_CONFIG_FILE"):
        for how in ("python", "launch"):
            out.append({"how": how, "config": "generated_style_ao", "where": where, "env": {}})
    return out


if __name__ == "__main__":
    main(cases(), run_case)
