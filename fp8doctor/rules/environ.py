"""Environment rules: ACCELERATE_MIXED_PRECISION vs FP8 intent, ACCELERATE_FP8_* values, unread look-alikes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.fixes import upgrade_line
from fp8doctor.knowledge.generations import accelerate_generation, first_accelerate
from fp8doctor.knowledge.predict import MIXED_PRECISIONS, mixed_precision_problem
from fp8doctor.rules.common import NO_INTENT, intent, intent_text, pkg

BOOL_VALUES = ("y", "yes", "t", "true", "on", "1", "n", "no", "f", "false", "off", "0")


def _one_of(*choices: str, fold: Callable[[str], str] = str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if fold(value) in choices else f"must be one of {', '.join(choices)}"
    return check


def _int(value: str) -> str | None:
    try:
        int(value)
    except ValueError:
        return "must be an integer"
    return None


def _flag(value: str) -> str | None:
    return None if value.lower() in BOOL_VALUES else "must be a boolean (true/false, 1/0, yes/no, on/off)"


def _backend(value: str) -> str | None:
    if value in ("AO", "TE", "MSAMP"):
        return None
    if value.upper() in ("AO", "TE", "MSAMP"):
        return (f"must be upper case ({value.upper()}): Accelerator.fp8_backend compares it case-sensitively and "
                f"raises ValueError: '{value}' is not a valid FP8BackendType")
    return "must be one of AO, TE, MSAMP (torchao is spelled AO)"


# How Accelerate parses each variable (recipe handlers' __post_init__ and Accelerator.fp8_backend, accelerate 1.15).
VALIDATORS: dict[str, Callable[[str], str | None]] = {
    "ACCELERATE_FP8_BACKEND": _backend,
    "ACCELERATE_FP8_FORMAT": _one_of("HYBRID", "E4M3", "E5M2", fold=str.upper),
    "ACCELERATE_FP8_AMAX_COMPUTE_ALGO": _one_of("max", "most_recent", fold=str.lower),
    "ACCELERATE_FP8_AMAX_HISTORY_LEN": _int,
    "ACCELERATE_FP8_MARGIN": _int,
    "ACCELERATE_FP8_INTERVAL": _int,
    "ACCELERATE_FP8_OPT_LEVEL": _one_of("O1", "O2"),
    "ACCELERATE_FP8_OVERRIDE_FPROP": _flag,
    "ACCELERATE_FP8_OVERRIDE_DGRAD": _flag,
    "ACCELERATE_FP8_OVERRIDE_WGRAD": _flag,
    "ACCELERATE_FP8_USE_AUTOCAST_DURING_EVAL": _flag,
    "ACCELERATE_FP8_USE_MXFP8_BLOCK_SCALING": _flag,
    "ACCELERATE_FP8_PAD_INNER_DIM": _flag,
    "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": _flag,
}


def validate_fp8_env(values: dict[str, str]) -> dict[str, str]:
    """name -> problem, for every ACCELERATE_FP8_* value Accelerate would reject."""
    problems = {}
    for name, value in values.items():
        check = VALIDATORS.get(name)
        why = check(value) if check else None
        if why:
            problems[name] = why
    return problems


def check_env_mixed_precision(facts: dict[str, Any]) -> Finding:
    signs = intent(facts)
    mp = facts.get("environ", {}).get("mixed_precision")
    problem = mixed_precision_problem(mp) if mp is not None else None
    if mp is not None and problem:
        near = mp.strip().lower()
        return Finding("env.mixed-precision", Level.FAIL,
                       f"ACCELERATE_MIXED_PRECISION={mp!r} is not one of {', '.join(MIXED_PRECISIONS)}",
                       problem + ".",
                       f"export ACCELERATE_MIXED_PRECISION={near if near in MIXED_PRECISIONS else 'fp8'}")
    if not signs:
        return Finding("env.mixed-precision", Level.SKIP, "ACCELERATE_MIXED_PRECISION: not checked", NO_INTENT)
    if mp is None:
        return Finding("env.mixed-precision", Level.OK, "ACCELERATE_MIXED_PRECISION is unset",
                       "The effective precision is decided by the configs (see the precision finding).")
    if mp == "fp8":
        return Finding("env.mixed-precision", Level.OK, "ACCELERATE_MIXED_PRECISION=fp8")
    launched = [c["path"] for c in facts.get("configs", []) if c.get("kind") == "accelerate"
                and str(c["data"].get("mixed_precision", "")) == "fp8"]
    acc = facts.get("accelerate_config", {})
    if acc.get("exists") and str(acc.get("mixed_precision") or "") == "fp8":
        launched.append(acc["path"])
    if launched:
        return Finding("env.mixed-precision", Level.WARN,
                       f"ACCELERATE_MIXED_PRECISION={mp} in the shell, fp8 only through accelerate launch",
                       f"`accelerate launch --config_file {launched[0]}` replaces it with fp8; any other way of "
                       f"starting the script (python, torchrun, llamafactory-cli alone) trains with {mp}.",
                       "export ACCELERATE_MIXED_PRECISION=fp8   # or always start with accelerate launch")
    return Finding("env.mixed-precision", Level.FAIL, f"ACCELERATE_MIXED_PRECISION={mp} while FP8 is intended",
                   intent_text(signs) + f", but the environment asks Accelerate for {mp}.",
                   "export ACCELERATE_MIXED_PRECISION=fp8")


def check_fp8_env_values(facts: dict[str, Any]) -> Finding | None:
    values = facts.get("environ", {}).get("accelerate_fp8", {})
    if not values:
        return None
    acc = accelerate_generation(pkg(facts, "accelerate"))
    backend = values.get("ACCELERATE_FP8_BACKEND")
    if backend is not None and acc.get("installed") and not acc.get("reads_fp8_backend_env", True):
        first = first_accelerate("reads_fp8_backend_env")
        return Finding("env.fp8-values", Level.WARN,
                       f"ACCELERATE_FP8_BACKEND={backend!r} is not read by Accelerator in accelerate {acc['version']}",
                       f"Accelerator reads ACCELERATE_FP8_BACKEND from accelerate {first} (lab-observed: on older "
                       "releases the value, even an invalid one, changes nothing).", upgrade_line(minimum=first))
    problems = validate_fp8_env(values)
    if not problems:
        return Finding("env.fp8-values", Level.OK, f"{len(values)} ACCELERATE_FP8_* value(s) valid",
                       ", ".join(f"{k}={v}" for k, v in values.items()))
    detail = "\n".join(f"{k}={values[k]!r}: {why}" for k, why in problems.items())
    fix = []
    for k in problems:
        if k == "ACCELERATE_FP8_BACKEND":
            fix.append(f"export {k}={values[k].upper() if values[k].upper() in ('AO', 'TE', 'MSAMP') else 'TE'}")
        else:
            fix.append(f"unset {k}   # or set a valid value")
    return Finding("env.fp8-values", Level.FAIL, f"Invalid ACCELERATE_FP8_* value(s): {', '.join(problems)}",
                   detail, "\n".join(fix))


def check_unread_lookalikes(facts: dict[str, Any]) -> list[Finding]:
    out = []
    for name, instead in facts.get("environ", {}).get("unread_lookalikes", {}).items():
        out.append(Finding(f"env.unread.{name}", Level.WARN, f"{name} is set but nothing reads it",
                           "It looks like an FP8 setting, but neither Accelerate, transformers nor Transformer Engine "
                           "reads this name.", f"Use {instead} instead."))
    return out
