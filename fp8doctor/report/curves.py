"""Loss curves of each FP8 cell against its bf16 baseline: a PNG (matplotlib) or text sparklines."""

from __future__ import annotations

import math
import os
from typing import Any

from fp8doctor import safeio

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], lo: float | None = None, hi: float | None = None) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "?" * len(values)
    lo = min(finite) if lo is None else lo
    hi = max(finite) if hi is None else hi
    span = (hi - lo) or 1.0
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append("!")
        else:
            out.append(BARS[min(len(BARS) - 1, max(0, int((v - lo) / span * (len(BARS) - 1) + 0.5)))])
    return "".join(out)


def _floats(xs: list[Any]) -> list[float]:
    out = []
    for x in xs or []:
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def curve_pairs(matrix_json: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per finished FP8 cell: label, entry, its losses and its baseline's losses."""
    cells = matrix_json.get("cells") or []
    baselines = {}
    for c in cells:
        spec = c["result"].get("spec") or {}
        if c["role"] == "baseline" and c["result"].get("outcome") == "finished":
            baselines[(spec.get("entry"), spec.get("seed"), spec.get("steps"), spec.get("size"))] = c["result"]
    pairs = []
    for c in cells:
        r = c["result"]
        spec = r.get("spec") or {}
        if c["role"] != "fp8" or r.get("outcome") != "finished":
            continue
        base = baselines.get((spec.get("entry"), spec.get("seed"), spec.get("steps"), spec.get("size")))
        pairs.append({
            "label": f"{spec.get('backend')}:{spec.get('recipe')}",
            "entry": spec.get("entry"),
            "fp8": _floats(r.get("losses")),
            "bf16": _floats(base.get("losses")) if base else [],
        })
    return pairs


def sparkline_table(pairs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for p in pairs:
        both = [v for v in p["fp8"] + p["bf16"] if math.isfinite(v)]
        lo, hi = (min(both), max(both)) if both else (None, None)
        rows.append([p["label"], p["entry"], sparkline(p["fp8"], lo, hi), sparkline(p["bf16"], lo, hi) or "-"])
    return rows


def plot_png(pairs: list[dict[str, Any]], path: str) -> str | None:
    """One subplot per entry path, the bf16 baseline dashed; None when matplotlib is not importable."""
    if not pairs:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    entries = list(dict.fromkeys(p["entry"] for p in pairs))
    cols = min(3, len(entries))
    rows = math.ceil(len(entries) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, entry in zip(axes.flat, entries, strict=False):
        mine = [p for p in pairs if p["entry"] == entry]
        if mine and mine[0]["bf16"]:
            base = mine[0]["bf16"]
            ax.plot(range(1, len(base) + 1), base, "k--", linewidth=2, label="bf16 baseline")
        for p in mine:
            ax.plot(range(1, len(p["fp8"]) + 1), p["fp8"], marker=".", linewidth=1, label=p["label"])
        ax.set_title(f"entry: {entry}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(entries):]:
        ax.axis("off")
    fig.suptitle("FP8 loss vs bf16 baseline (same seed)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with safeio.open_write_binary(path, "the loss plot") as fh:
        fig.savefig(fh, dpi=100, format="png")
    plt.close(fig)
    return path
