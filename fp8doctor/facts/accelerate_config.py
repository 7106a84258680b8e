"""The Accelerate config file that `accelerate launch` would use, and its FP8-relevant settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fp8doctor.configs import load_config
from fp8doctor.system.errors import UsageError


def default_config_path(environ: Mapping[str, str]) -> Path:
    """Accelerate's default location: $HF_HOME/accelerate, else $XDG_CACHE_HOME/huggingface/accelerate."""
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME", "~"), ".cache")
    hf_home = environ.get("HF_HOME") or os.path.join(cache, "huggingface")
    folder = Path(os.path.expanduser(hf_home)) / "accelerate"
    yaml_path, json_path = folder / "default_config.yaml", folder / "default_config.json"
    if not yaml_path.is_file() and json_path.is_file():
        return json_path
    return yaml_path


def resolve_path(explicit: str | None, environ: Mapping[str, str]) -> tuple[Path, str]:
    """Which file to read, and why that one."""
    if explicit:
        return Path(explicit), "--accelerate-config"
    if environ.get("ACCELERATE_CONFIG_FILE"):
        return Path(environ["ACCELERATE_CONFIG_FILE"]), "ACCELERATE_CONFIG_FILE"
    return default_config_path(environ), "default location"


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    fsdp = data.get("fsdp_config") if isinstance(data.get("fsdp_config"), dict) else {}
    fp8 = data.get("fp8_config") if isinstance(data.get("fp8_config"), dict) else {}
    cpu_ram = fsdp.get("fsdp_cpu_ram_efficient_loading", fsdp.get("cpu_ram_efficient_loading"))
    return {
        "mixed_precision": None if data.get("mixed_precision") is None else str(data["mixed_precision"]),
        "fp8_config": fp8,
        "distributed_type": data.get("distributed_type"),
        "num_processes": data.get("num_processes"),
        "fsdp_version": fsdp.get("fsdp_version"),
        "cpu_ram_efficient_loading": cpu_ram,
    }


def accelerate_config_facts(explicit: str | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """An explicitly named file that cannot be read raises UsageError; a missing default file is a fact."""
    path, why = resolve_path(explicit, environ)
    base: dict[str, Any] = {"path": str(path), "chosen_by": why}
    if why == "default location" and not path.is_file():
        return {**base, "exists": False}
    try:
        cfg = load_config(path, expect="accelerate")
    except UsageError as exc:
        if why == "ACCELERATE_CONFIG_FILE":
            raise UsageError(f"ACCELERATE_CONFIG_FILE points at {exc}") from None
        raise
    return {**base, "exists": True, "data": cfg["data"], "duplicates": cfg.get("duplicates", []),
            **summarize(cfg["data"])}
