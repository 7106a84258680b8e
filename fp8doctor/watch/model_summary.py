"""What a watched process's prepared model did: FP8 layers against eligible ones, forward-pass evidence, the
first eval-mode pass and `--numerics` SQNR, and how the layers sit in a sharding wrapper."""

from __future__ import annotations

from typing import Any


def model_summary(acc: dict[str, Any]) -> dict[str, Any] | None:
    """The last prepared model of this Accelerator: FP8 layers, eligible layers, forward evidence."""
    models = [m for p in acc.get("prepares") or [] for m in p.get("models") or [] if "fp8_layers" in m]
    if not models:
        return None
    model = models[-1]
    forwards = [f for f in acc.get("forwards") or [] if f.get("arg_index") == model.get("arg_index")]
    last = forwards[-1] if forwards else None
    return {
        "class": model.get("class"),
        "rule": model.get("rule"),
        "fp8_layers": len(model.get("fp8_layers") or []),
        "eligible": len(model.get("eligible") or []),
        "missing": sorted(set(model.get("eligible") or []) - set(model.get("fp8_layers") or [])),
        "forwards_seen": last.get("forwards") if last else 0,
        "fp8_module_forwards": (last.get("counter") or {}).get("fp8_module_forwards", 0) if last else 0,
        "fp8_active": bool(last and last.get("fp8_active")),
        "eval": eval_summary(acc, model),
        "numerics": numerics_summary(acc, model),
        "wrapper": model.get("wrapper"),
        "outside_optimizer": model.get("outside_optimizer"),
    }


def numerics_summary(acc: dict[str, Any], model: dict[str, Any]) -> dict[str, Any] | None:
    """`watch --numerics`: the sampled layers and those whose FP8 output falls below the SQNR threshold."""
    from fp8doctor.numerics import summary

    seen = [n for n in acc.get("numerics") or [] if n.get("arg_index") == model.get("arg_index")]
    if not seen:
        return None
    return summary(seen[-1].get("layers") or {}, seen[-1].get("every"), seen[-1].get("unsampled"))


def eval_summary(acc: dict[str, Any], model: dict[str, Any]) -> dict[str, Any] | None:
    """The first forward pass in eval mode of this model: in FP8 or not, and why not (None: none was seen)."""
    from fp8doctor.knowledge.evaluation import eval_in_fp8
    from fp8doctor.observe import fp8_active

    seen = [e for e in acc.get("eval_forwards") or [] if e.get("arg_index") == model.get("arg_index")]
    if not seen:
        return None
    counter = seen[-1].get("counter") or {}
    fp8 = fp8_active(len(model.get("fp8_layers") or []), counter)
    backend = (acc.get("result") or {}).get("fp8_backend")
    known = eval_in_fp8(backend)
    calls = counter.get("fp8_module_forwards", 0)
    if fp8:
        return {"fp8": True, "reason": f"{calls} FP8 module calls in the first eval-mode forward pass", "fix": None}
    why = known["reason"] if known["fp8"] is False else "no FP8 module ran in it"
    return {"fp8": False, "reason": f"the first eval-mode forward pass ran without FP8 ({calls} FP8 module calls): "
                                    f"{why}", "fix": known["fix"]}


def wrapped_words(model: dict[str, Any]) -> str:
    """', all inside fsdp2 units' (or how many are not) when the model was prepared under a sharding plugin."""
    wrapper = model.get("wrapper")
    if not isinstance(wrapper, dict):
        return ""
    plugin = wrapper.get("plugin")
    inside = len(wrapper.get("fp8_layers_wrapped") or [])
    if not wrapper.get("wrapped_modules"):
        return f", but no module was sharded by {plugin}"
    if inside == model["fp8_layers"]:
        gather = ", float8 all-gather" if wrapper.get("float8_all_gather") else ""
        return f", all inside {plugin} units{gather}"
    return f", {model['fp8_layers'] - inside} outside every {plugin} unit"
