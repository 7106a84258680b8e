"""Verdicts on what FP8 really did in a watched command: pure functions on collected process dicts.

The words and their meanings are fp8doctor.verdicts' WATCH_VERDICTS.
"""

from __future__ import annotations

import os
from typing import Any

from fp8doctor.knowledge.capability import FAMILY_MIN_CC, cc_str
from fp8doctor.knowledge.frontends import Frontend, frontend_of_module, overrides_fp8
from fp8doctor.verdicts import (
    FP8_ACTIVE,
    NO_ACCELERATOR,
    NO_FORWARD,
    RAISED,
    SILENT_BF16,
    WATCH_SEVERITY,
    not_fp8_word,
    precision_words,
)


def _q(value: Any) -> str:
    return "unset" if value is None else repr(value)


def _call(acc: dict[str, Any]) -> str:
    parts = []
    if acc.get("arg_mixed_precision") is not None:
        parts.append(f"mixed_precision={acc['arg_mixed_precision']!r}")
    if acc.get("handlers"):
        parts.append(f"kwargs_handlers=[{', '.join(acc['handlers'])}]")
    return f"Accelerator({', '.join(parts)})"


def frontend_of(acc: dict[str, Any], proc: dict[str, Any]) -> str | None:
    """The frontend (TRL, ...) whose argument class built this process's TrainingArguments, if any."""
    modules = [(acc.get("trainer_args") or {}).get("args_module")]
    modules += [t.get("module") for t in proc.get("training_args") or []]
    for module in modules:
        found = frontend_of_module(module)
        if found is not None:
            return found.name
    return None


def _setter(acc: dict[str, Any]) -> str:
    """Who passed the mixed_precision argument, in the user's words where we can tell."""
    ta = acc.get("trainer_args") or {}
    cls = ta.get("args_class") or "TrainingArguments"
    found = frontend_of_module(ta.get("args_module"))
    if found is not None:
        cls = f"{found.name} {cls}"
    if ta.get("bf16") and acc.get("arg_mixed_precision") == "bf16":
        return f"{cls}(bf16=True)"
    if ta.get("fp16") and acc.get("arg_mixed_precision") == "fp16":
        return f"{cls}(fp16=True)"
    if ta:
        return f"{cls}(mixed_precision={ta.get('mixed_precision')!r}) via {ta.get('trainer_class', 'Trainer')}"
    callers = acc.get("callers") or []
    return f"the caller ({callers[0]})" if callers else "the caller"


def _default_note(found: Frontend | None, proc: dict[str, Any]) -> str:
    """Why the frontend's config held bf16, and the field to set, when the release overrides FP8 by default."""
    if found is None:
        return ""
    version = (proc.get("versions") or {}).get(found.package)
    if not overrides_fp8(found, version):
        return ""
    return f" ({found.name} {version} defaults bf16 to True when it is not set: {found.how})"


def _also(acc: dict[str, Any], proc: dict[str, Any]) -> str:
    arg = acc.get("arg_mixed_precision")
    if arg in (None, "no", "fp8"):
        return ""
    found = frontend_of_module((acc.get("trainer_args") or {}).get("args_module"))
    return f"; and {_setter(acc)} passed mixed_precision={arg!r}{_default_note(found, proc)}"


def silent_reason(acc: dict[str, Any], proc: dict[str, Any]) -> tuple[str, str]:
    """(winning setting, sentence) explaining why an Accelerator ended up without FP8."""
    arg = acc.get("arg_mixed_precision")
    env_now = (acc.get("env") or {}).get("ACCELERATE_MIXED_PRECISION")
    env_start = (proc.get("env_at_start") or {}).get("ACCELERATE_MIXED_PRECISION")
    result = (acc.get("result") or {}).get("mixed_precision")
    ta = acc.get("trainer_args") or {}
    for targs in proc.get("training_args") or []:
        before = (targs.get("env_before") or {}).get("ACCELERATE_MIXED_PRECISION")
        after = (targs.get("env_after") or {}).get("ACCELERATE_MIXED_PRECISION")
        if before == "fp8" and after != "fp8":
            flag = "bf16=True" if targs.get("bf16") else "fp16=True" if targs.get("fp16") else "its settings"
            found = frontend_of_module(targs.get("module"))
            cls = f"{found.name} {targs.get('cls')}" if found else targs.get("cls", "TrainingArguments")
            return (f"{cls}({flag})", f"{cls}({flag}) rewrote ACCELERATE_MIXED_PRECISION from "
                    f"'fp8' to {_q(after)} before the Accelerator was built{_default_note(found, proc)}")
    if arg == "fp8" and result != "fp8":
        return ("Accelerate", f"Accelerator(mixed_precision='fp8') resulted in mixed_precision={_q(result)}: "
                "Accelerate downgrades fp8 where the device cannot run it (compute capability below "
                f"{cc_str(FAMILY_MIN_CC['per-tensor'])})")
    if arg not in (None, "fp8", "no") and env_now == "fp8":
        setter = _setter(acc)
        found = frontend_of_module(ta.get("args_module"))
        return (setter, f"{setter} passed mixed_precision={arg!r} to Accelerator although "
                        f"ACCELERATE_MIXED_PRECISION=fp8{_default_note(found, proc)}")
    if env_now == "fp8" and ta and ta.get("mixed_precision") != "fp8":
        read = [t for t in proc.get("training_args") or []
                if (t.get("env_before") or {}).get("ACCELERATE_MIXED_PRECISION") != "fp8"]
        if read:
            seen = (read[-1].get("env_before") or {}).get("ACCELERATE_MIXED_PRECISION")
            return ("ACCELERATE_MIXED_PRECISION set too late",
                    f"ACCELERATE_MIXED_PRECISION=fp8 was set after {read[-1].get('cls', 'TrainingArguments')} "
                    f"read it (it saw {_q(seen)}), so mixed_precision={_q(arg)} reached the Accelerator")
    launcher = proc.get("launcher_fp8")
    if launcher and env_start != "fp8" and env_now != "fp8":
        words = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(launcher["argv"][:3]))
        return ("the launcher", f"ACCELERATE_MIXED_PRECISION was 'fp8' for its launcher (pid {launcher['pid']}: "
                f"{words} ...), which started this process with {_q(env_start)} (accelerate launch sets the variable "
                f"from its own options and config: 'no' unless given){_also(acc, proc)}")
    if env_start == "fp8" and env_now != "fp8":
        return ("code in the command", f"ACCELERATE_MIXED_PRECISION was 'fp8' when the process started but "
                f"{_q(env_now)} when the Accelerator was built: the command changed it")
    if acc.get("fp8_handlers"):
        return ("mixed precision setting", f"{', '.join(acc['fp8_handlers'])} was passed but mixed precision "
                f"resolved to {_q(result)} (argument {_q(arg)}, ACCELERATE_MIXED_PRECISION {_q(env_now)})")
    return ("nothing asked for fp8", f"nothing asked for FP8: mixed_precision argument {_q(arg)}, "
            f"ACCELERATE_MIXED_PRECISION {_q(env_now)}, no FP8 recipe handler; it ran in {precision_words(result)}")


def _model_summary(acc: dict[str, Any]) -> dict[str, Any] | None:
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
    }


def numerics_summary(acc: dict[str, Any], model: dict[str, Any]) -> dict[str, Any] | None:
    """`watch --numerics`: the sampled layers and those whose FP8 output falls below the SQNR threshold."""
    from fp8doctor.numerics import summary

    seen = [n for n in acc.get("numerics") or [] if n.get("arg_index") == model.get("arg_index")]
    return summary(seen[-1].get("layers") or {}, seen[-1].get("every")) if seen else None


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


def _wrapped_words(model: dict[str, Any]) -> str:
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
            src = f" (passed by {_setter(acc)})" if mp not in (None, "fp8") else ""
            why = f"; the FP8 recipe {', '.join(acc['fp8_handlers'])} reached an Accelerator whose " \
                  f"mixed precision was {_q(mp)}{src}"
        return {"verdict": RAISED, "error": err, "accelerator": acc,
                "reason": f"{_call(acc)} raised {err.get('type')}: {err.get('message')}{why}"}
    with_model = [a for a in built if _model_summary(a)]
    acc = with_model[-1] if with_model else built[-1]
    result = acc.get("result") or {}
    model = _model_summary(acc)
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
        layers += _wrapped_words(model)
    if model["fp8_layers"] == 0:
        return {**out, "verdict": SILENT_BF16, "winner": "layer filter",
                "reason": f"fp8_enabled with backend {backend}, but prepare() converted no layer: {layers}"}
    if model["fp8_active"]:
        return {**out, "verdict": FP8_ACTIVE, "reason": f"{layers}; FP8 modules ran "
                f"{model['fp8_module_forwards']} times in the first {model['forwards_seen']} forward passes"}
    if model["forwards_seen"] or model["fp8_module_forwards"]:
        return {**out, "verdict": SILENT_BF16, "winner": "FP8 autocast off",
                "reason": f"{layers}, but they did not run in FP8 during the first forward passes "
                          "(Transformer Engine autocast was off)"}
    return {**out, "verdict": NO_FORWARD, "reason": f"{layers}; no forward pass of the prepared model was seen"}


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
    summary = {k: v for k, v in worst.items() if k in ("verdict", "reason", "winner", "error", "frontend")}
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
    elif v == NO_ACCELERATOR:
        return ["# no Accelerator was built: the command does not train through accelerate (or never reached it)"]
    from fp8doctor.knowledge.fixes import fix_lines

    winner = str(verdict.get("winner") or "")
    if winner.startswith("TrainingArguments("):
        flag = "fp16" if "fp16" in winner else "bf16"
        facts = {**facts, "configs": [*facts.get("configs", []), {
            "path": "your training config (TrainingArguments)", "kind": "training_args", "data": {flag: True}}]}
    return lines + fix_lines(facts)
