"""The model's Linear layers judged per FP8 path, grouped into layer classes, with FLOP coverage and a roofline
estimate of the FP8 speed-up on a named GPU (pure: plain data in, plain data out)."""

from __future__ import annotations

import re
from typing import Any

from fp8doctor.inspect.model import ModelFacts
from fp8doctor.knowledge import roofline, shapes
from fp8doctor.knowledge.capability import fp8_family_supported

RECIPE_OF_FAMILY = {"per-tensor": "tensorwise", "mxfp8": "mxfp8"}


def layer_class(name: str) -> str:
    """The layer's name with each numeric path part replaced by '*': model.layers.*.mlp.down_proj."""
    return ".".join("*" if part.isdigit() else part for part in name.split("."))


def _indices(names: list[str]) -> str:
    """The numbers that '*' stands for, compactly: 0-31, or 0-3,5."""
    nums = sorted({int(m) for n in names for m in re.findall(r"(?:^|\.)(\d+)(?=\.|$)", n)})
    if not nums:
        return ""
    runs, start = [], nums[0]
    for prev, cur in zip(nums, [*nums[1:], None], strict=True):
        if cur != prev + 1:
            runs.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = cur
    return ",".join(runs)


def judge(facts: ModelFacts, accelerate: str | None) -> dict[str, list[tuple[str, str]]]:
    return {t: shapes.classify(facts.layers, t, accelerate) for t in shapes.TARGETS}


def _classes(facts: ModelFacts, verdicts: dict[str, list[tuple[str, str]]], total_flops: int) -> list[dict[str, Any]]:
    groups: dict[str, list[int]] = {}
    for i, layer in enumerate(facts.layers):
        groups.setdefault(layer_class(layer.name), []).append(i)
    out = []
    for cls, idx in groups.items():
        members = [facts.layers[i] for i in idx]
        shapes_seen = sorted({(m.in_features, m.out_features) for m in members})
        per_target = {}
        for t, v in verdicts.items():
            statuses = sorted({v[i][0] for i in idx})
            reasons = sorted({v[i][1] for i in idx if v[i][1]})
            count = sum(1 for i in idx if v[i][0] == shapes.FP8)
            per_target[t] = {"status": statuses[0] if len(statuses) == 1 else "mixed", "fp8": count,
                             "reasons": reasons}
        flops = sum(2 * m.in_features * m.out_features for m in members)
        out.append({"class": cls, "count": len(idx), "indices": _indices([m.name for m in members]),
                    "shapes": [list(s) for s in shapes_seen], "flops_share": flops / total_flops if total_flops else 0,
                    "targets": per_target})
    return out


def _coverage(facts: ModelFacts, verdicts: dict[str, list[tuple[str, str]]], total: int) -> dict[str, Any]:
    out = {}
    for t, v in verdicts.items():
        fp8 = [layer for layer, (status, _) in zip(facts.layers, v, strict=True) if status == shapes.FP8]
        flops = sum(2 * m.in_features * m.out_features for m in fp8)
        out[t] = {**shapes.TARGETS[t], "fp8_layers": len(fp8), "linear_layers": len(facts.layers),
                  "kept": sum(1 for s, _ in v if s == shapes.KEPT), "fails": sum(1 for s, _ in v if s == shapes.FAILS),
                  "flops_share": flops / total if total else 0.0}
    return out


def estimate(facts: ModelFacts, verdicts: dict[str, list[tuple[str, str]]], gpu: str, batch: int,
             seq_len: int) -> dict[str, Any]:
    """bf16 and FP8 step time of the Linear layers (+ attention matmuls, bf16 either way) per target, and the
    FP8 speed-up per layer class, on `gpu`."""
    spec = roofline.spec(gpu)
    row = roofline.table()["gpus"][gpu]
    cc = tuple(row["compute_capability"])
    tokens = batch * seq_len
    attention = roofline.attention_s(spec, batch, seq_len, facts.attention_width, facts.hidden_layers)
    bf16 = [roofline.linear_s(spec, tokens, m.in_features, m.out_features, None) for m in facts.layers]
    targets: dict[str, Any] = {}
    for t, v in verdicts.items():
        family = shapes.TARGETS[t]["family"]
        ok, why = fp8_family_supported(cc, family)  # type: ignore[arg-type]
        if not ok:
            targets[t] = {"supported": False, "reason": why}
            continue
        recipe = RECIPE_OF_FAMILY[family]
        fp8 = [roofline.linear_s(spec, tokens, m.in_features, m.out_features, recipe) if status == shapes.FP8 else b
               for m, b, (status, _) in zip(facts.layers, bf16, v, strict=True)]
        base, new = sum(bf16) + attention, sum(fp8) + attention
        targets[t] = {"supported": True, "recipe": recipe, "bf16_ms": base * 1e3, "fp8_ms": new * 1e3,
                      "speedup": base / new if new else 1.0,
                      "linear_speedup": sum(bf16) / sum(fp8) if sum(fp8) else 1.0}
    per_class: dict[str, dict[str, float]] = {}
    for m in facts.layers:
        cls = layer_class(m.name)
        if cls in per_class:
            continue
        b = roofline.linear_s(spec, tokens, m.in_features, m.out_features, None)
        per_class[cls] = {r: b / roofline.linear_s(spec, tokens, m.in_features, m.out_features, r)
                          for f, r in RECIPE_OF_FAMILY.items() if fp8_family_supported(cc, f)[0]}
    return {"gpu": gpu, "name": row["name"], "compute_capability": list(cc), "source": row["source"],
            "efficiency_source": roofline.table()["efficiency"]["source"], "batch": batch, "seq_len": seq_len,
            "tokens": tokens, "attention_ms": attention * 1e3, "targets": targets, "class_speedup": per_class}


def analyze(facts: ModelFacts, *, accelerate: str | None, gpu: str | None, batch: int,
            seq_len: int) -> dict[str, Any]:
    verdicts = judge(facts, accelerate)
    total = sum(2 * m.in_features * m.out_features for m in facts.layers)
    layers = [{**m.to_dict(), "class": layer_class(m.name),
               "targets": {t: {"status": v[i][0], "reason": v[i][1]} for t, v in verdicts.items()}}
              for i, m in enumerate(facts.layers)]
    return {
        "model": {"path": facts.path, "model_type": facts.model_type, "architecture": facts.architecture,
                  "parameters": facts.parameters, "linear_layers": len(facts.layers),
                  "hidden_layers": facts.hidden_layers, "notes": facts.notes},
        "accelerate": accelerate,
        "coverage": _coverage(facts, verdicts, total),
        "classes": _classes(facts, verdicts, total),
        "layers": layers,
        "estimate": estimate(facts, verdicts, gpu, batch, seq_len) if gpu else None,
    }
