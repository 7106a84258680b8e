"""The per-layer FP8 numerics table and the keep-in-bf16 lines, for `watch --numerics` and `matrix` alike (a
summary is fp8doctor.numerics.summary's dict)."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

HEADERS = ["layer", "samples", "SQNR dB (min)", "input underflow", "input saturated", "weight underflow",
           "input amax", "weight amax"]


def _pct(x: Any) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) else "-"


def _num(x: Any, fmt: str = ".3g") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) else "-"


def layer_table(layers: dict[str, Any], fmt: str) -> str:
    rows = [[name, str(row.get("samples", 0)), _num(row.get("sqnr_db_min"), ".1f"),
             _pct(row.get("input_underflow_max")), _pct(row.get("input_saturated_max")),
             _pct(row.get("weight_underflow_max")), _num(row.get("input_amax_max")),
             _num(row.get("weight_amax_max"))] for name, row in layers.items() if isinstance(row, dict)]
    return tabulate(rows, headers=HEADERS, tablefmt="github" if fmt == "md" else "simple", disable_numparse=True)


def candidate_lines(n: dict[str, Any]) -> list[str]:
    from fp8doctor.numerics import unsampled_words

    unsampled = [unsampled_words(n["unsampled"])] if n.get("unsampled") else []
    if not any(isinstance(row, dict) and row.get("samples") for row in n["layers"].values()):
        return ["no FP8 layer was sampled", *unsampled]
    if not n["candidates"]:
        return [f"no sampled layer below {n['threshold_db']:g} dB SQNR ({n['source']})", *unsampled]
    return ([f"candidates to keep in bf16 (SQNR below {n['threshold_db']:g} dB; {n['source']}): "
             + ", ".join(n["candidates"])] + [f"  {path}: {cfg}" for path, cfg in n["config"].items()] + unsampled)
