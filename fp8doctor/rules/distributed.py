"""FSDP and DeepSpeed settings read against FP8: Accelerate YAML (`distributed_type`, `fsdp_config.fsdp_version`),
DeepSpeed JSON, and `fsdp` / `deepspeed` in TrainingArguments or LLaMA-Factory configs. The facts about what a
release does come from knowledge/distributed.py (held against the lab's observations)."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.fixes import Fix, render_all
from fp8doctor.rules.common import intent


def plugin_sources(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, plugin) for every FSDP or DeepSpeed setting in the user's configs; plugin is one of
    knowledge.distributed.PLUGINS' families: "fsdp1", "fsdp2" or "deepspeed"."""
    out: list[tuple[str, str]] = []
    sources = [(c["path"], c["kind"], c.get("data") or {}) for c in facts.get("configs", [])]
    acc = facts.get("accelerate_config", {})
    if acc.get("exists") and acc.get("path") not in {p for p, _, _ in sources}:
        sources.append((acc["path"], "accelerate", acc.get("data") or {}))
    for path, kind, data in sources:
        if kind == "deepspeed":
            out.append((path, "deepspeed"))
            continue
        dist_type = str(data.get("distributed_type", "")).upper()
        fsdp_cfg = data.get("fsdp_config") if isinstance(data.get("fsdp_config"), dict) else {}
        version = str(fsdp_cfg.get("fsdp_version", fsdp_cfg.get("version", 1)))
        if dist_type == "FSDP" or (kind != "accelerate" and data.get("fsdp") not in (None, "", False, [])):
            out.append((f"{path}: {'distributed_type FSDP' if dist_type else 'fsdp'}",
                        "fsdp2" if version == "2" else "fsdp1"))
        if dist_type == "DEEPSPEED" or (kind != "accelerate" and data.get("deepspeed")):
            out.append((f"{path}: {'distributed_type DEEPSPEED' if dist_type else 'deepspeed'}", "deepspeed"))
    return out


def check_fsdp_fp8(facts: dict[str, Any]) -> list[Finding]:
    if not intent(facts):
        return []
    out = []
    for where, plugin in plugin_sources(facts):
        if plugin == "fsdp2":
            out.append(Finding("dist.fsdp-version", Level.OK, f"FSDP2 ({where}) with FP8",
                               "Accelerate converts the Linear layers to FP8 before fully_shard wraps the decoder "
                               "layers; torchao's float8 all-gather is available (fp8_config: "
                               "enable_fsdp_float8_all_gather: true, tensorwise recipe)."))
        elif plugin == "fsdp1":
            path = where.split(": ")[0]
            fix = Fix("launch", "Use FSDP2: float8 all-gather and torchao's FSDP support are FSDP2-only", "AO",
                      edits={path: {"fsdp_config": {"fsdp_version": 2}}})
            out.append(Finding(
                "dist.fsdp-version", Level.WARN, f"FSDP1 ({where}) with FP8",
                "torchao's float8 all-gather (enable_fsdp_float8_all_gather) and its FSDP recipes are FSDP2-only "
                "(torchao's documentation); the lab sees Accelerate convert before FSDP1 wraps, but FSDP1 + FP8 "
                "cannot run past prepare() on CPU (torch's FSDP1 refuses Accelerate's CPU device_id), so fp8doctor "
                "cannot prove FSDP1 + FP8 here, while FSDP2 + FP8 trains (matrix --entry fsdp2).",
                render_all([fix])))
    return out
