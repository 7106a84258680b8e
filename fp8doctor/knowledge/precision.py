"""Which mixed precision really reaches the Accelerator, and the chain that decides it (pure, on facts).

Chain: shell ACCELERATE_MIXED_PRECISION -> TrainingArguments (Trainer path) -> LLaMA-Factory -> Accelerator. An
Accelerate config file enters only through `accelerate launch` (Accelerator() reads its argument and the environment).
"""

from __future__ import annotations

from typing import Any

from fp8doctor.knowledge.frontends import trl_bf16
from fp8doctor.knowledge.predict import (
    MP_VAR,
    UNKNOWN,
    llamafactory_sets_env,
    predict_accelerator,
    state_mixed_precision,
    transformers_passes,
)

TRAINING_KINDS = ("llamafactory", "training_args", "trl")


def _frontend_resolved(cfg: dict[str, Any], pkgs: dict[str, Any]) -> dict[str, Any]:
    """A TRL config with the bf16 its config class will hold (TRL >= 0.19 turns an unset bf16 into True; the newest
    behaviour when TRL is not installed here)."""
    if cfg.get("kind") != "trl" or cfg.get("data", {}).get("bf16") is not None:
        return cfg
    held = trl_bf16(pkgs.get("trl"), None)
    return {**cfg, "data": {**cfg["data"], "bf16": True if held is None else held}}


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


def _launch_config(facts: dict[str, Any]) -> tuple[str, str, str] | None:
    """(path, mixed_precision, how to apply it) of the Accelerate config `accelerate launch` would use, if any.
    A file named with --config applies through `accelerate launch --config_file FILE`; the default-location file
    through a bare `accelerate launch`. Neither applies to `python train.py`, torchrun or llamafactory-cli."""
    found = None
    for c in facts.get("configs", []):
        if c.get("kind") == "accelerate" and c["data"].get("mixed_precision") is not None:
            found = (c["path"], str(c["data"]["mixed_precision"]), f"accelerate launch --config_file {c['path']}")
    acc = facts.get("accelerate_config", {})
    if found is None and acc.get("exists") and acc.get("mixed_precision") is not None:
        how = ("accelerate launch" if acc.get("chosen_by") == "default location"
               else f"accelerate launch --config_file {acc.get('path')}")
        found = (str(acc.get("path")), str(acc["mixed_precision"]), how)
    return found


def _lf_fp8(cfgs: list[dict[str, Any]]) -> bool:
    return any(c["kind"] == "llamafactory" and truthy(c["data"].get("fp8"))
               and str(c["data"].get("stage", "sft")) in ("pt", "sft") for c in cfgs)


def _reaches(facts: dict[str, Any], shell_env: str | None, trainer_cfgs: list[dict[str, Any]],
             chain: list[dict[str, str]] | None) -> tuple[str, str | None, dict[str, str]]:
    """(mixed precision the Accelerator gets, the argument passed or None, the environment it reads)."""
    pkgs = facts.get("packages", {})
    env = {MP_VAR: shell_env} if shell_env is not None else {}
    if not trainer_cfgs:
        return state_mixed_precision(None, env), None, env
    precisions = [p for p in (_training_precision(c["data"], c["kind"]) for c in trainer_cfgs) if p]
    bf16 = bool(precisions) and precisions[-1] == "bf16"
    passes = transformers_passes(pkgs.get("transformers"), bf16, env)
    if precisions and precisions[-1] == "fp16" and passes:
        passes = {**passes, "env_after": "fp16" if passes["writes_env"] else passes["env_after"],
                  "mixed_precision": None if passes["writes_env"] else "fp16"}
    if passes is None:
        passes = {"env_after": env.get(MP_VAR), "mixed_precision": precisions[-1] if precisions else None,
                  "kwargs_handlers": None, "writes_env": False}
    if passes["writes_env"]:
        env = {**env, MP_VAR: passes["env_after"]}
        if chain is not None:
            chain.append({"stage": "TrainingArguments", "source": "transformers 4.x writes the variable",
                          "value": f"ACCELERATE_MIXED_PRECISION={passes['env_after']}"})
    elif chain is not None:
        chain.append({"stage": "TrainingArguments", "source": "mixed_precision (transformers 5.x)",
                      "value": str(passes["mixed_precision"])})
    if _lf_fp8(trainer_cfgs):
        lf = pkgs.get("llamafactory")
        sets = llamafactory_sets_env(lf)
        if sets:
            env = {**env, MP_VAR: "fp8"}
        if chain is not None:
            value = ("ACCELERATE_MIXED_PRECISION=fp8 (and FP8_BACKEND, which nothing reads)" if sets else
                     "leaves ACCELERATE_MIXED_PRECISION as it is" if sets is False else
                     "not installed here: 0.9.5 sets ACCELERATE_MIXED_PRECISION=fp8, 0.9.4 does not")
            chain.append({"stage": "env", "source": f"LLaMA-Factory {lf or '?'} Trainer.__init__ (fp8: true)",
                          "value": value})
    return state_mixed_precision(passes["mixed_precision"], env), passes["mixed_precision"], env


def effective_precision(facts: dict[str, Any]) -> dict[str, Any]:
    """The mixed precision the Accelerator ends up with when the user starts training without `accelerate launch`
    (python, torchrun, llamafactory-cli), each step of the chain, the precision under `accelerate launch` of the
    config file when there is one, and the predicted outcome. Values are compared exactly, as Accelerate does."""
    pkgs = facts.get("packages", {})
    configs = [_frontend_resolved(c, pkgs) for c in facts.get("configs", [])]
    chain: list[dict[str, str]] = []
    for c in configs:
        if c.get("kind") in TRAINING_KINDS or c.get("kind") == "deepspeed":
            tp = _training_precision(c["data"], c["kind"])
            fp8 = "fp8: true" if truthy(c["data"].get("fp8")) and c["kind"] != "deepspeed" else ""
            shown = ", ".join(x for x in (f"{tp}: true" if tp else "no bf16/fp16", fp8) if x)
            chain.append({"stage": "config", "source": c["path"], "value": shown})
    launch = _launch_config(facts)
    if launch:
        chain.append({"stage": "config", "source": launch[0],
                      "value": f"mixed_precision: {launch[1]} (applies only through `{launch[2]}`)"})
    shell = facts.get("environ", {}).get("mixed_precision")
    chain.append({"stage": "env", "source": "ACCELERATE_MIXED_PRECISION",
                  "value": f"{shell!r} from the shell" if shell is not None else "unset"})
    trainer_cfgs = [c for c in configs if c.get("kind") in TRAINING_KINDS]
    effective, mp_arg, env = _reaches(facts, shell, trainer_cfgs, chain)
    chain.append({"stage": "Accelerator", "source": "argument" if mp_arg is not None else "ACCELERATE_MIXED_PRECISION"
                  if env.get(MP_VAR) is not None else "default", "value": effective})
    with_launch = None
    if launch:
        with_launch = _reaches(facts, launch[1], trainer_cfgs, None)[0]

    cc = [tuple(g["cc"]) for g in facts.get("gpu", {}).get("visible", []) if g.get("cc")]
    hardware_note = None
    if effective == "fp8" and cc and max(cc) < (8, 9):
        hardware_note = (f"Accelerate turns fp8 into fp16 on compute capability {max(cc)[0]}.{max(cc)[1]} "
                         "(below 8.9) with only a warning")
    outcome = predict_accelerator(pkgs.get("accelerate"), torchao=bool(pkgs.get("torchao")), mp_arg=mp_arg, env=env,
                                  handler=None) if pkgs.get("accelerate") and not pkgs.get("transformer-engine") \
        else dict(UNKNOWN)
    return {
        "effective": effective,
        "with_launch": with_launch,
        "launch": launch[2] if launch else None,
        "chain": chain,
        "trainer_path": bool(trainer_cfgs),
        "hardware_note": hardware_note,
        "outcome": outcome,
        "prediction": describe_outcome(outcome, pkgs.get("accelerate")),
    }


def describe_outcome(outcome: dict[str, Any], accelerate: str | None) -> str | None:
    """One sentence for a predicted Accelerator outcome (None when the doctor makes no claim)."""
    kind = outcome.get("outcome")
    if kind == "raised":
        where = {"init": "when the Accelerator is built", "prepare": "in prepare()"}.get(outcome.get("stage"), "")
        return f"{outcome['type']} {where} (accelerate {accelerate}): {outcome['message']}".replace("  ", " ")
    if kind == "ok":
        if outcome["fp8"]:
            return f"FP8 active: Linear layers converted by Accelerate {accelerate}"
        return (f"no FP8: the Accelerator runs with mixed precision {outcome['mixed_precision']!r} and converts no "
                f"layer (accelerate {accelerate})")
    return None
