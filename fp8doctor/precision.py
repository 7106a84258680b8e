"""Which mixed precision really reaches the Accelerator, and the chain that decides it (pure, on facts).

Chain: config files -> TrainingArguments (only on the Trainer path) -> ACCELERATE_MIXED_PRECISION -> Accelerator.
"""

from __future__ import annotations

from typing import Any

from fp8doctor.generations import accelerate_generation, transformers_generation

TRAINING_KINDS = ("llamafactory", "training_args")


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _ds_enabled(section: Any) -> bool:
    return isinstance(section, dict) and truthy(section.get("enabled"))


def fp8_intent(facts: dict[str, Any]) -> list[str]:
    """Every sign that the user means to train in FP8 (empty list: no sign)."""
    signs: list[str] = []
    for cfg in facts.get("configs", []):
        data, path = cfg.get("data", {}), cfg.get("path", "?")
        if truthy(data.get("fp8")) and not isinstance(data.get("fp8"), dict):
            signs.append(f"{path}: fp8: true")
        if str(data.get("mixed_precision", "")).lower() == "fp8":
            signs.append(f"{path}: mixed_precision: fp8")
        if cfg.get("kind") == "deepspeed" and "fp8" in data:
            signs.append(f"{path}: DeepSpeed `fp8` section")
    env = facts.get("environ", {})
    if str(env.get("mixed_precision") or "").lower() == "fp8":
        signs.append("ACCELERATE_MIXED_PRECISION=fp8")
    for name in env.get("accelerate_fp8", {}):
        signs.append(f"{name} is set")
    acc = facts.get("accelerate_config", {})
    if acc.get("exists") and str(acc.get("mixed_precision") or "").lower() == "fp8":
        signs.append(f"{acc.get('path')}: mixed_precision: fp8")
    return signs


def _training_precision(data: dict[str, Any], kind: str) -> str | None:
    """What a training config sets on TrainingArguments: fp16 > bf16 > None (neither)."""
    if kind == "deepspeed":
        if _ds_enabled(data.get("fp16")):
            return "fp16"
        return "bf16" if _ds_enabled(data.get("bf16")) else None
    if truthy(data.get("fp16")):
        return "fp16"
    if truthy(data.get("bf16")):
        return "bf16"
    return None


def effective_precision(facts: dict[str, Any]) -> dict[str, Any]:
    """The mixed precision the Accelerator ends up with, each step of the chain, and a predicted outcome."""
    pkgs = facts.get("packages", {})
    tf = transformers_generation(pkgs.get("transformers"))
    acc_gen = accelerate_generation(pkgs.get("accelerate"))
    configs = facts.get("configs", [])
    chain: list[dict[str, str]] = []

    acc_cfg = facts.get("accelerate_config", {})
    acc_sources = [c for c in configs if c.get("kind") == "accelerate"]
    launched_mp: str | None = None
    launched_from = None
    for c in acc_sources:
        if c["data"].get("mixed_precision") is not None:
            launched_mp, launched_from = str(c["data"]["mixed_precision"]).lower(), c["path"]
    if launched_mp is None and acc_cfg.get("exists") and acc_cfg.get("mixed_precision") is not None:
        launched_mp, launched_from = str(acc_cfg["mixed_precision"]).lower(), acc_cfg.get("path")
    for c in configs:
        if c.get("kind") in TRAINING_KINDS or c.get("kind") == "deepspeed":
            tp = _training_precision(c["data"], c["kind"])
            fp8 = "fp8: true" if truthy(c["data"].get("fp8")) and c["kind"] != "deepspeed" else ""
            shown = ", ".join(x for x in (f"{tp}: true" if tp else "no bf16/fp16", fp8) if x)
            chain.append({"stage": "config", "source": c["path"], "value": shown})
    if launched_mp is not None:
        chain.append({"stage": "config", "source": str(launched_from), "value": f"mixed_precision: {launched_mp}"})

    env_mp = facts.get("environ", {}).get("mixed_precision")
    if launched_mp is not None:
        env_value: str | None = launched_mp
        env_note = f"set to {launched_mp} by `accelerate launch` from {launched_from}"
        if env_mp and env_mp.lower() != launched_mp:
            env_note += f" (replacing the shell's {env_mp})"
    else:
        env_value = env_mp.lower() if env_mp else None
        env_note = f"{env_mp} from the shell" if env_mp else "unset"

    trainer_cfgs = [c for c in configs if c.get("kind") in TRAINING_KINDS]
    if trainer_cfgs:
        precisions = [p for p in (_training_precision(c["data"], c["kind"]) for c in trainer_cfgs) if p]
        ta = precisions[-1] if precisions else (env_value or "no")
        src = "bf16/fp16 flag" if precisions else "ACCELERATE_MIXED_PRECISION" if env_value else "default"
        chain.append({"stage": "env", "source": "ACCELERATE_MIXED_PRECISION", "value": env_note})
        chain.append({"stage": "TrainingArguments", "source": f"mixed_precision from {src}", "value": ta})
        if tf.get("writes_env"):
            chain.append({"stage": "env", "source": "TrainingArguments.__post_init__ (transformers 4.x)",
                          "value": f"ACCELERATE_MIXED_PRECISION rewritten to {ta}"})
            accel_src = "AcceleratorState from ACCELERATE_MIXED_PRECISION"
        else:
            accel_src = "Accelerator(mixed_precision=...) argument from the Trainer"
        effective = ta
    else:
        chain.append({"stage": "env", "source": "ACCELERATE_MIXED_PRECISION", "value": env_note})
        effective = env_value or "no"
        accel_src = "AcceleratorState from ACCELERATE_MIXED_PRECISION" if env_value else "default"
    chain.append({"stage": "Accelerator", "source": accel_src, "value": effective})

    cc = [tuple(g["cc"]) for g in facts.get("gpu", {}).get("visible", []) if g.get("cc")]
    hardware_note = None
    if effective == "fp8" and cc and max(cc) < (8, 9):
        hardware_note = (f"Accelerate turns fp8 into fp16 on compute capability {max(cc)[0]}.{max(cc)[1]} "
                         "(below 8.9) with only a warning")

    prediction = None
    injects = [c for c in trainer_cfgs if c["kind"] == "llamafactory" and truthy(c["data"].get("fp8"))]
    if injects:
        if effective == "fp8":
            prediction = "fp8 reaches the Accelerator: the injected recipe is accepted"
        elif tf.get("always_passes_kwargs_handlers"):
            fallback = "silent bf16 fallback" if effective == "bf16" else f"silent fallback to {effective}"
            prediction = (f"{fallback}: a patch that injects the recipe only when kwargs_handlers is missing "
                          f"injects nothing on transformers {tf['version']}, and training runs in {effective}")
        elif acc_gen.get("generation") == "<=1.3":
            prediction = "ImportError: TERecipeKwargs does not exist in accelerate " + str(acc_gen["version"])
        else:
            prediction = f"ValueError: {acc_gen.get('error_message', 'FP8 configuration requires fp8')}"
    return {
        "effective": effective,
        "chain": chain,
        "trainer_path": bool(trainer_cfgs),
        "hardware_note": hardware_note,
        "prediction": prediction,
    }
