"""Why an Accelerator of a watched process ended up without FP8: the setting that won over the FP8 request, in
the user's words (which class, flag, launcher or line of the command set what), on collected process dicts."""

from __future__ import annotations

import os
from typing import Any

from fp8doctor.knowledge.capability import FAMILY_MIN_CC, cc_str
from fp8doctor.knowledge.frontends import Frontend, by_name, frontend_of_module, overrides_fp8
from fp8doctor.verdicts import precision_words
from fp8doctor.watch.frontend_stop import process_frontend


def quoted(value: Any) -> str:
    return "unset" if value is None else repr(value)


def accelerator_call(acc: dict[str, Any]) -> str:
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
    found = process_frontend(proc)
    return found.name if found is not None else None


def precision_setter(acc: dict[str, Any]) -> str:
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
    return f" ({found.name} {version} {found.overrides}: {found.how})"


def _also(acc: dict[str, Any], proc: dict[str, Any]) -> str:
    arg = acc.get("arg_mixed_precision")
    if arg in (None, "no", "fp8"):
        return ""
    found = frontend_of_module((acc.get("trainer_args") or {}).get("args_module"))
    return f"; and {precision_setter(acc)} passed mixed_precision={arg!r}{_default_note(found, proc)}"


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
                    f"'fp8' to {quoted(after)} before the Accelerator was built{_default_note(found, proc)}")
    if arg == "fp8" and result != "fp8":
        return ("Accelerate", f"Accelerator(mixed_precision='fp8') resulted in mixed_precision={quoted(result)}: "
                "Accelerate downgrades fp8 where the device cannot run it (compute capability below "
                f"{cc_str(FAMILY_MIN_CC['per-tensor'])})")
    if arg not in (None, "fp8", "no") and env_now == "fp8":
        setter = precision_setter(acc)
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
                    f"read it (it saw {quoted(seen)}), so mixed_precision={quoted(arg)} reached the Accelerator")
    launcher = proc.get("launcher_fp8")
    if launcher and env_start != "fp8" and env_now != "fp8":
        words = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(launcher["argv"][:3]))
        return ("the launcher", f"ACCELERATE_MIXED_PRECISION was 'fp8' for its launcher (pid {launcher['pid']}: "
                f"{words} ...), which started this process with {quoted(env_start)} (accelerate launch sets the "
                f"variable from its own options and config: 'no' unless given){_also(acc, proc)}")
    if env_start == "fp8" and env_now != "fp8":
        found = by_name(frontend_of(acc, proc))
        if found is not None and found.sets_precision_env:
            release = " ".join(filter(None, (found.name, (proc.get("versions") or {}).get(found.package))))
            return (found.name, f"ACCELERATE_MIXED_PRECISION was 'fp8' when the process started but "
                    f"{quoted(env_now)} when the Accelerator was built: {release} {found.overrides}; set "
                    f"{found.how}")
        return ("code in the command", f"ACCELERATE_MIXED_PRECISION was 'fp8' when the process started but "
                f"{quoted(env_now)} when the Accelerator was built: the command changed it")
    if acc.get("fp8_handlers"):
        return ("mixed precision setting", f"{', '.join(acc['fp8_handlers'])} was passed but mixed precision "
                f"resolved to {quoted(result)} (argument {quoted(arg)}, ACCELERATE_MIXED_PRECISION {quoted(env_now)})")
    return ("nothing asked for fp8", f"nothing asked for FP8: mixed_precision argument {quoted(arg)}, "
            f"ACCELERATE_MIXED_PRECISION {quoted(env_now)}, no FP8 recipe handler; it ran in {precision_words(result)}")
