"""Environment variables that steer FP8 training, and look-alikes that nobody reads."""

from __future__ import annotations

import re
from collections.abc import Mapping

# The variables that steer FP8 training (`env` judges them) ...
PREFIXES = ("ACCELERATE_", "NVTE_", "NCCL_", "PYTORCH_", "TORCH_CUDA", "CUDA_VISIBLE_DEVICES")
EXACT = ("CUDA_VISIBLE_DEVICES", "HF_HOME", "XDG_CACHE_HOME", "WORLD_SIZE", "LOCAL_RANK")
# ... and, for a bug report, those that describe the machine's accelerator, distributed and library setup too.
REPORT_PREFIXES = (*PREFIXES, "CUDA_", "TORCH", "HF_", "TRANSFORMERS_", "OMP_", "FP8_", "WANDB_", "LOCAL_RANK", "RANK",
                   "WORLD_SIZE", "MASTER_")

# ACCELERATE_FP8_* names that Accelerate's recipe handlers and Accelerator read (checked in accelerate 1.15's source).
ACCELERATE_FP8_READ = frozenset({
    "ACCELERATE_FP8_BACKEND", "ACCELERATE_FP8_FORMAT", "ACCELERATE_FP8_AMAX_COMPUTE_ALGO",
    "ACCELERATE_FP8_AMAX_HISTORY_LEN", "ACCELERATE_FP8_MARGIN", "ACCELERATE_FP8_INTERVAL",
    "ACCELERATE_FP8_OVERRIDE_FPROP", "ACCELERATE_FP8_OVERRIDE_DGRAD", "ACCELERATE_FP8_OVERRIDE_WGRAD",
    "ACCELERATE_FP8_USE_AUTOCAST_DURING_EVAL", "ACCELERATE_FP8_USE_MXFP8_BLOCK_SCALING", "ACCELERATE_FP8_OPT_LEVEL",
    "ACCELERATE_FP8_PAD_INNER_DIM", "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER",
})

# Names a user plausibly sets believing they enable FP8, and what is read instead.
LOOKALIKES: dict[str, str] = {
    "FP8_BACKEND": "ACCELERATE_FP8_BACKEND",
    "FP8_FORMAT": "ACCELERATE_FP8_FORMAT",
    "FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER",
    "FP8_PAD_INNER_DIM": "ACCELERATE_FP8_PAD_INNER_DIM",
    "FP8_AMAX_COMPUTE_ALGO": "ACCELERATE_FP8_AMAX_COMPUTE_ALGO",
    "FP8_AMAX_HISTORY_LEN": "ACCELERATE_FP8_AMAX_HISTORY_LEN",
    "MIXED_PRECISION": "ACCELERATE_MIXED_PRECISION",
    "ACCELERATE_FP8": "ACCELERATE_MIXED_PRECISION=fp8",
    "ACCELERATE_USE_FP8": "ACCELERATE_MIXED_PRECISION=fp8",
    "ACCELERATE_FP8_ENABLED": "ACCELERATE_MIXED_PRECISION=fp8",
    "ACCELERATE_CONFIG_FILE": "`accelerate launch --config_file FILE`",
}
_LOOKALIKE_PATTERN = re.compile(r"^(FP8_|USE_FP8|ENABLE_FP8|NVTE_FP8$)")


def relevant_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that matter for FP8 training (values unredacted here: rendering redacts)."""
    return {k: v for k, v in sorted(environ.items()) if k.startswith(PREFIXES) or k in EXACT}


def report_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables a bug report lists (REPORT_PREFIXES), sorted; unredacted here: the report redacts."""
    return {k: v for k, v in sorted(environ.items()) if k.startswith(REPORT_PREFIXES)}


def unread_lookalikes(environ: Mapping[str, str]) -> dict[str, str]:
    """Set variables that look like FP8 settings but that no library reads -> the variable that is read."""
    found: dict[str, str] = {}
    for name in environ:
        if name in LOOKALIKES:
            found[name] = LOOKALIKES[name]
        elif name.startswith("ACCELERATE_FP8_") and name not in ACCELERATE_FP8_READ:
            found[name] = "one of " + ", ".join(sorted(n.removeprefix("ACCELERATE_FP8_") for n in ACCELERATE_FP8_READ))
        elif _LOOKALIKE_PATTERN.match(name):
            found[name] = "ACCELERATE_MIXED_PRECISION=fp8 and ACCELERATE_FP8_*"
    return dict(sorted(found.items()))


def environ_facts(environ: Mapping[str, str]) -> dict[str, object]:
    return {
        "relevant": relevant_env(environ),
        "accelerate_fp8": {k: v for k, v in sorted(environ.items()) if k.startswith("ACCELERATE_FP8_")},
        "mixed_precision": environ.get("ACCELERATE_MIXED_PRECISION"),
        "unread_lookalikes": unread_lookalikes(environ),
    }
