"""The FP8-layer checks of a cell, on every rank: FP8 layers against eligible layers, FP8 forwards seen, and for
the sharded entries (fsdp2, deepspeed) every FP8 layer inside a sharded unit of the plugin."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Level
from fp8doctor.matrix.verdict import Verdict


def strip(name: str) -> str:
    # DDP / Accelerate / torch.compile wrappers prefix module names; compare the model's own names.
    for prefix in ("module.", "_orig_mod."):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name


def per_rank(r: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(who, result) for each rank of a multi-rank result, else the result itself."""
    ranks = [x for x in r.get("ranks") or [] if isinstance(x, dict)]
    if not ranks:
        return [("", r)]
    return [(f" (rank {x.get('rank', i)})", x) for i, x in enumerate(ranks)]


def _layers(r: dict[str, Any], eligible_names: list[str]) -> tuple[Level, str, float]:
    fp8 = {strip(n) for n in r.get("fp8_layers") or []}
    eligible = {strip(n) for n in eligible_names}
    detail = f"{len(fp8)} FP8 layers / {len(eligible)} eligible"
    if not eligible:
        return Level.FAIL, detail + ": no eligible Linear layer", 0.0
    if len(fp8) != len(eligible):
        missing = sorted(eligible - fp8)[:3]
        extra = sorted(fp8 - eligible)[:3]
        more = (f"; not converted: {', '.join(missing)}" if missing else "") + (
            f"; unexpected: {', '.join(extra)}" if extra else "")
        return Level.FAIL, detail + more, float(len(fp8))
    if fp8 != eligible:
        return Level.WARN, detail + " (same count, different names)", float(len(fp8))
    return Level.OK, detail, float(len(fp8))


def _wrapped(r: dict[str, Any]) -> tuple[Level, str]:
    """Every FP8 layer inside a sharded unit of the plugin ('' when the result carries no wrapper record)."""
    wrapper = r.get("wrapper")
    if not isinstance(wrapper, dict):
        return Level.OK, ""
    plugin = wrapper.get("plugin") or "the plugin"
    fp8 = {strip(n) for n in r.get("fp8_layers") or []}
    inside = {strip(n) for n in wrapper.get("fp8_layers_wrapped") or []}
    units = [u for u in wrapper.get("wrapped_modules") or [] if u != "<root>"]
    outside = sorted(fp8 - inside)
    if not wrapper.get("wrapped_modules"):
        return Level.FAIL, f"; no module sharded by {plugin}"
    if outside:
        return Level.FAIL, f"; {len(outside)} FP8 layers outside every {plugin} unit: {', '.join(outside[:3])}"
    gather = ", float8 all-gather" if wrapper.get("float8_all_gather") else ""
    return Level.OK, f", all inside {plugin} units ({len(units)} + root{gather})"


def check_fp8_layers(r: dict[str, Any]) -> Verdict:
    """FP8 layers = eligible on every rank (eligibility is computed once per rank before conversion) and, under
    a sharding plugin, inside its units."""
    worst: tuple[Level, str, float] | None = None
    ranks = per_rank(r)
    for who, res in ranks:
        level, detail, value = _layers(res, res.get("eligible_layers") or r.get("eligible_layers") or [])
        wlevel, wdetail = _wrapped(res)
        if wlevel is Level.FAIL:
            level = Level.FAIL
        found = (level, detail + wdetail + who, value)
        if worst is None or (found[0] is not Level.OK and worst[0] is Level.OK) or \
                (found[0] is Level.FAIL and worst[0] is not Level.FAIL):
            worst = found
    assert worst is not None
    level, detail, value = worst
    if level is Level.OK and len(ranks) > 1:
        detail = detail.removesuffix(ranks[0][0]) + f" on each of {len(ranks)} ranks"
    return Verdict("fp8_layers", level, detail, value)


def _active_detail(forwards: dict[str, Any]) -> tuple[str, float]:
    n = forwards.get("fp8_module_forwards", 0)
    detail = f"{n} FP8 module forwards"
    te_on, te_off = forwards.get("te_fp8_enabled_forwards", 0), forwards.get("te_fp8_disabled_forwards", 0)
    if te_on or te_off:
        detail += f" ({te_on} inside TE FP8 autocast, {te_off} outside)"
    return detail, float(n)


def check_fp8_active(r: dict[str, Any]) -> Verdict:
    """FP8 modules ran forward (inside TE's autocast for TE) on every rank."""
    ranks = per_rank(r)
    for who, res in ranks:
        detail, n = _active_detail(res.get("forwards") or {})
        if not res.get("fp8_active"):
            return Verdict("fp8_active", Level.FAIL, detail + who, n)
    detail, n = _active_detail(r.get("forwards") or {})
    return Verdict("fp8_active", Level.OK, detail + (f" on each of {len(ranks)} ranks" if len(ranks) > 1 else ""), n)
