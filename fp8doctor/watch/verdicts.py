"""Verdicts on what FP8 really did in a watched command: pure functions on collected process dicts.

The words and their meanings are fp8doctor.verdicts' WATCH_VERDICTS.
"""

from __future__ import annotations

from typing import Any

from fp8doctor.verdicts import (
    FP8_ACTIVE,
    FP8_NOT_TRAINED,
    NO_ACCELERATOR,
    NO_FORWARD,
    RAISED,
    SILENT_BF16,
    WATCH_SEVERITY,
    not_fp8_word,
)
from fp8doctor.watch.model_summary import model_summary, wrapped_words
from fp8doctor.watch.silent_reasons import accelerator_call, frontend_of, precision_setter, quoted, silent_reason


def process_verdict(proc: dict[str, Any]) -> dict[str, Any]:
    """{verdict, reason, winner, accelerator, model} for one process."""
    accs = proc.get("accelerators") or []
    if not accs:
        tail = "" if proc.get("exited") else " (the process ended without reaching its exit handlers)"
        return {"verdict": NO_ACCELERATOR, "reason": f"this process built no accelerate.Accelerator{tail}"}
    built = [a for a in accs if not a.get("error")]
    if not built:
        acc = accs[-1]
        err = acc["error"]
        why = ""
        if acc.get("fp8_handlers"):
            mp = acc.get("arg_mixed_precision")
            src = f" (passed by {precision_setter(acc)})" if mp not in (None, "fp8") else ""
            why = f"; the FP8 recipe {', '.join(acc['fp8_handlers'])} reached an Accelerator whose " \
                  f"mixed precision was {quoted(mp)}{src}"
        return {"verdict": RAISED, "error": err, "accelerator": acc,
                "reason": f"{accelerator_call(acc)} raised {err.get('type')}: {err.get('message')}{why}"}
    with_model = [a for a in built if model_summary(a)]
    acc = with_model[-1] if with_model else built[-1]
    result = acc.get("result") or {}
    model = model_summary(acc)
    out: dict[str, Any] = {"accelerator": acc, "model": model}
    frontend = frontend_of(acc, proc)
    if frontend:
        out["frontend"] = frontend
    if not result.get("fp8_enabled"):
        winner, reason = silent_reason(acc, proc)
        crash = next((p["error"] for p in acc.get("prepares") or [] if p.get("error")), None)
        if crash:  # e.g. ACCELERATE_FP8_BACKEND=AO exported while bf16 won: _prepare_ao finds no recipe
            reason += f"; then prepare() raised {crash.get('type')}: {crash.get('message')}"
        return {**out, "verdict": not_fp8_word(result.get("mixed_precision")), "winner": winner, "reason": reason}
    backend = result.get("fp8_backend")
    if model is None:
        return {**out, "verdict": NO_FORWARD,
                "reason": f"fp8_enabled with backend {backend}, but prepare() was never given a model"}
    layers = f"{model['fp8_layers']} FP8 layers of {model['eligible']} eligible Linear ({model['rule']} rule)"
    if model["fp8_layers"]:
        layers += wrapped_words(model)
    if model["fp8_layers"] == 0:
        return {**out, "verdict": SILENT_BF16, "winner": "layer filter",
                "reason": f"fp8_enabled with backend {backend}, but prepare() converted no layer: {layers}"}
    if model["fp8_active"]:
        ran = (f"{layers}; FP8 modules ran {model['fp8_module_forwards']} times in the first "
               f"{model['forwards_seen']} forward passes")
        outside = model.get("outside_optimizer") or {}
        if outside.get("fp8_weights"):
            return {**out, "verdict": FP8_NOT_TRAINED,
                    "reason": f"{ran}, but {not_trained_words(outside, acc.get('ao_config'))}",
                    "ao_config": acc.get("ao_config")}
        return {**out, "verdict": FP8_ACTIVE, "reason": ran}
    if model["forwards_seen"] or model["fp8_module_forwards"]:
        return {**out, "verdict": SILENT_BF16, "winner": "FP8 autocast off",
                "reason": f"{layers}, but they did not run in FP8 during the first forward passes "
                          "(Transformer Engine autocast was off)"}
    return {**out, "verdict": NO_FORWARD, "reason": f"{layers}; no forward pass of the prepared model was seen"}


def not_trained_words(outside: dict[str, Any], ao_config: dict[str, Any] | None) -> str:
    """'the optimizer does not hold N FP8 layers' weights (M trainable parameters outside it, e.g. ...): ...'."""
    from fp8doctor.knowledge.optimizer_params import ALL_GATHER

    whose = "your own" if (ao_config or {}).get("user_config") else "Accelerate's"
    why = (f" ({whose} torchao config has {ALL_GATHER}=True, with which torchao wraps each converted weight for "
           "FSDP2's float8 all-gather)" if (ao_config or {}).get("all_gather") else "")
    return (f"the optimizer does not hold {outside['fp8_weights']} FP8 layers' weights ({outside['count']} "
            f"trainable parameters outside it, e.g. {', '.join((outside.get('names') or [])[:3])}): prepare() gave "
            f"them new Parameters after the optimizer was built{why}, so they never train")


def _mark_launchers(procs: list[dict[str, Any]]) -> None:
    """For a process started without ACCELERATE_MIXED_PRECISION=fp8 by an ancestor that had it: that ancestor."""
    by_pid = {p.get("pid"): p for p in procs}
    for p in procs:
        parent = by_pid.get(p.get("ppid"))
        seen = 0
        while parent is not None and seen < 8:
            if (parent.get("env_at_start") or {}).get("ACCELERATE_MIXED_PRECISION") == "fp8":
                p["launcher_fp8"] = {"pid": parent.get("pid"), "argv": list(parent.get("argv") or [])}
                break
            parent, seen = by_pid.get(parent.get("ppid")), seen + 1


def rank_processes(procs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training processes: those that built an Accelerator, plus, for a RANK none of those covers, the first
    process a launcher gave that RANK (a rank that died early). Launcher shells and the rank's own Python
    children (spawned DataLoader workers inherit RANK) are helpers, not ranks."""
    with_acc = [p for p in procs if p.get("accelerators")]
    covered = {p.get("rank") for p in with_acc}
    pids = {p.get("pid"): p for p in procs}
    uncovered = []
    for p in procs:
        rank = p.get("rank")
        if p.get("accelerators") or rank is None or rank in covered:
            continue
        parent = pids.get(p.get("ppid"))
        if parent is not None and parent.get("rank") == rank:
            continue  # a child of that rank's process
        uncovered.append(p)
        covered.add(rank)
    chosen = {id(p) for p in with_acc + uncovered}
    return [p for p in procs if id(p) in chosen]


def overall_verdict(procs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-rank verdicts and the overall one (the worst rank's); helper processes are listed, not judged."""
    _mark_launchers(procs)
    ranks = rank_processes(procs)
    rank_ids = {id(p) for p in ranks}
    per_rank = []
    for p in ranks:
        v = process_verdict(p)
        per_rank.append({"pid": p.get("pid"), "rank": p.get("rank"), "local_rank": p.get("local_rank"), **v})
    helpers = [{"pid": p.get("pid"), "argv": p.get("argv")} for p in procs if id(p) not in rank_ids]
    if not per_rank:
        n = len(procs)
        reason = (f"no process built an accelerate.Accelerator ({n} Python process{'es' if n != 1 else ''} "
                  "observed)" if n else "no Python process was observed: the command ran no Python, or ran it with "
                  "-I, -E or -S (which skip PYTHONPATH or sitecustomize)")
        return {"verdict": NO_ACCELERATOR, "reason": reason, "ranks": [], "helpers": helpers}
    worst = min(per_rank, key=lambda r: WATCH_SEVERITY.index(r["verdict"]))
    summary = {k: v for k, v in worst.items() if k in ("verdict", "reason", "winner", "error", "frontend",
                                                      "ao_config")}
    if len(per_rank) > 1:
        summary["reason"] = f"rank {worst.get('rank')}: {worst['reason']}"
    return {**summary, "ranks": per_rank, "helpers": helpers}


def facts_from_processes(procs: list[dict[str, Any]]) -> dict[str, Any]:
    """The facts `fixes.fixes_for` reads, from what the watched processes themselves saw."""
    versions: dict[str, Any] = {}
    env: dict[str, Any] = {}
    frontend = None
    for p in procs:
        versions = versions or p.get("versions") or {}
        for acc in p.get("accelerators") or []:
            frontend = frontend or frontend_of(acc, p)
        for acc in p.get("accelerators") or []:
            backend = (acc.get("env") or {}).get("ACCELERATE_FP8_BACKEND")
            if backend:
                env["ACCELERATE_FP8_BACKEND"] = backend
            for h in acc.get("fp8_handlers") or []:
                if h == "TERecipeKwargs":
                    env.setdefault("ACCELERATE_FP8_BACKEND", "TE")
                elif h == "AORecipeKwargs":
                    env.setdefault("ACCELERATE_FP8_BACKEND", "AO")
    out: dict[str, Any] = {"packages": versions, "environ": {"accelerate_fp8": env}}
    if frontend:
        out["frontend"] = frontend
    return out


def fix_hint(verdict: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    """Concrete lines that make FP8 win for the installed versions; empty when FP8 was active."""
    v = verdict.get("verdict")
    if v == FP8_ACTIVE:
        return []
    lines: list[str] = []
    if v == RAISED:
        lines.append("# an FP8 recipe handler was passed while mixed precision was not fp8: make fp8 the mixed "
                     "precision the Accelerator receives, or pass the recipe only when it is")
    elif v == SILENT_BF16 and verdict.get("winner") == "layer filter":
        return ["# no Linear layer qualified: FP8 needs in/out features divisible by 16, and Accelerate's torchao "
                "path skips the first and last Linear; use a larger model or a module filter that includes them"]
    elif v == FP8_NOT_TRAINED:
        from fp8doctor.knowledge.command_forms import parse
        from fp8doctor.knowledge.fixes import not_trained_fix, render

        return render(not_trained_fix(parse(facts.get("command")), facts.get("frontend"),
                                      own_config=bool((verdict.get("ao_config") or {}).get("user_config"))))
    elif v == NO_ACCELERATOR and not facts.get("frontend"):
        return ["# no Accelerator was built: the command does not train through accelerate (or never reached it)"]
    from fp8doctor.knowledge.fixes import fix_lines

    winner = str(verdict.get("winner") or "")
    if winner.startswith("TrainingArguments("):
        flag = "fp16" if "fp16" in winner else "bf16"
        facts = {**facts, "configs": [*facts.get("configs", []), {
            "path": "your training config (TrainingArguments)", "kind": "training_args", "data": {flag: True}}]}
    return lines + fix_lines(facts)
