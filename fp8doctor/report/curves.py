"""Loss curves of each FP8 cell against its bf16 baseline: a PNG with a difference panel (matplotlib, the `plot`
extra) and text sparklines."""

from __future__ import annotations

import math
import os
from typing import Any

from fp8doctor.system import safeio

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


def final_diff(pair: dict[str, Any]) -> float | None:
    """FP8 − bf16 of the last step's loss (None without both)."""
    if not pair["fp8"] or not pair["bf16"]:
        return None
    d = pair["fp8"][-1] - pair["bf16"][-1]
    return d if math.isfinite(d) else None


def sparkline_table(pairs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for p in pairs:
        both = [v for v in p["fp8"] + p["bf16"] if math.isfinite(v)]
        lo, hi = (min(both), max(both)) if both else (None, None)
        d = final_diff(p)
        rows.append([p["label"], p["entry"], sparkline(p["fp8"], lo, hi), sparkline(p["bf16"], lo, hi) or "-",
                     "-" if d is None else f"{d:+.2e}"])
    return rows


def plot_title(pairs: list[dict[str, Any]], emulated: bool) -> str:
    backends = ", ".join(dict.fromkeys(p["label"].split(":")[0] for p in pairs))
    return f"FP8 ({backends}) vs bf16 baseline, same seed" + (" - CPU emulation (torchao emulate=True)"
                                                                if emulated else "")


def plot_png(pairs: list[dict[str, Any]], path: str, emulated: bool = False) -> str | None:
    """Per entry path: the losses (bf16 baseline dashed) above their FP8 − bf16 difference. None when matplotlib
    is not importable (the `plot` extra)."""
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
    fig, axes = plt.subplots(2 * rows, cols, figsize=(4.4 * cols, 5.2 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [2, 1] * rows})
    for i, entry in enumerate(entries):
        ax, dax = axes[2 * (i // cols)][i % cols], axes[2 * (i // cols) + 1][i % cols]
        mine = [p for p in pairs if p["entry"] == entry]
        if mine and mine[0]["bf16"]:
            base = mine[0]["bf16"]
            ax.plot(range(1, len(base) + 1), base, "k--", linewidth=2, label="bf16 baseline")
        for p in mine:
            ax.plot(range(1, len(p["fp8"]) + 1), p["fp8"], marker=".", linewidth=1, label=p["label"])
            n = min(len(p["fp8"]), len(p["bf16"]))
            if n:
                dax.plot(range(1, n + 1), [p["fp8"][k] - p["bf16"][k] for k in range(n)], marker=".",
                         linewidth=1, label=p["label"])
        dax.axhline(0.0, color="k", linewidth=0.8, linestyle="--")
        ax.set_title(f"entry: {entry}")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        dax.set_xlabel("step")
        dax.set_ylabel("FP8 − bf16 loss")
        dax.grid(alpha=0.3)
    for k in range(len(entries), rows * cols):
        axes[2 * (k // cols)][k % cols].axis("off")
        axes[2 * (k // cols) + 1][k % cols].axis("off")
    fig.suptitle(plot_title(pairs, emulated))
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with safeio.open_write_binary(path, "the loss plot") as fh:
        fig.savefig(fh, dpi=100, format="png")
    plt.close(fig)
    return path
