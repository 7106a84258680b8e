"""Version rules: combinations of torch, Transformer Engine and Accelerate known to break FP8."""

from __future__ import annotations

from typing import Any

from fp8doctor.findings import Finding, Level
from fp8doctor.knowledge.capability import TE_INSTALL
from fp8doctor.knowledge.fixes import upgrade_line
from fp8doctor.knowledge.generations import accelerate_generation, accelerate_min, first_accelerate
from fp8doctor.knowledge.versions import parse_version
from fp8doctor.rules.common import intent, intent_text, pkg, truthy


def check_te_packages(facts: dict[str, Any]) -> Finding | None:
    """TE ships as a meta package, a CUDA core (cu12/cu13) and a torch extension: all must match, and torch."""
    meta = pkg(facts, "transformer-engine")
    parts = {k: pkg(facts, k) for k in ("transformer-engine", "transformer-engine-cu12", "transformer-engine-cu13",
                                         "transformer-engine-torch")}
    present = {k: v for k, v in parts.items() if v}
    if not present:
        return None
    problems = []
    releases = {k: parse_version(v).release[:3] if parse_version(v) else v for k, v in present.items()}
    if len(set(releases.values())) > 1:
        problems.append("Transformer Engine packages have different versions: "
                        + ", ".join(f"{k} {v}" for k, v in present.items()))
    torch_cuda = facts.get("torch_build", {}).get("cuda")
    torch_v = pkg(facts, "torch") or ""
    if facts.get("torch_build", {}).get("installed") and not torch_cuda:
        problems.append(f"torch {torch_v} is a CPU-only build; Transformer Engine needs a CUDA build of torch")
    elif torch_cuda:
        major = str(torch_cuda).split(".")[0]
        for core in ("12", "13"):
            if present.get(f"transformer-engine-cu{core}") and major != core:
                problems.append(f"transformer-engine-cu{core} is built for CUDA {core}, "
                                f"but torch uses CUDA {torch_cuda}")
    if not problems:
        return Finding("versions.te-torch", Level.OK, f"Transformer Engine {meta or ''} packages match torch {torch_v}")
    return Finding("versions.te-torch", Level.FAIL, "Transformer Engine does not match its parts or torch",
                   "\n".join(problems),
                   "Install one consistent set, with a CUDA build of torch of the same CUDA major version: "
                   f"{TE_INSTALL.replace('[pytorch]', '[pytorch]==<one version>')} --force-reinstall")


def _te_option_values(facts: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Recipe options that reach TE through Accelerate: from ACCELERATE_FP8_* and any fp8_config."""
    found: dict[str, tuple[str, Any]] = {}
    env = facts.get("environ", {}).get("accelerate_fp8", {})
    for name in ("INTERVAL", "OVERRIDE_FPROP", "OVERRIDE_DGRAD", "OVERRIDE_WGRAD"):
        if f"ACCELERATE_FP8_{name}" in env:
            found[name] = (f"ACCELERATE_FP8_{name}", env[f"ACCELERATE_FP8_{name}"])
    sources = [facts.get("accelerate_config", {})] + [
        {"path": c["path"], "fp8_config": c["data"].get("fp8_config")} for c in facts.get("configs", [])]
    for src in sources:
        fp8 = src.get("fp8_config") if isinstance(src.get("fp8_config"), dict) else {}
        if "interval" in fp8:
            found["INTERVAL"] = (f"{src.get('path')}: fp8_config.interval", fp8["interval"])
        if "override_linear_precision" in fp8:
            found["OVERRIDE"] = (f"{src.get('path')}: fp8_config.override_linear_precision",
                                 fp8["override_linear_precision"])
    return found


def check_accelerate_te_options(facts: dict[str, Any]) -> Finding | None:
    te = parse_version(pkg(facts, "transformer-engine") or pkg(facts, "transformer-engine-torch"))
    if te is None:
        return None
    opts = _te_option_values(facts)
    problems = []
    # Accelerate's to_kwargs() drops values equal to its defaults, so only non-default values reach TE.
    interval = opts.get("INTERVAL")
    if interval and str(interval[1]).strip() not in ("1", "") and te.release[:2] >= (2, 2):
        problems.append(f"{interval[0]}={interval[1]}: DelayedScaling lost `interval` in TE 2.2, "
                        f"so TE {te} raises TypeError")
    overrides = [v for k, v in opts.items() if k.startswith("OVERRIDE")]
    for src, val in overrides:
        on = any(truthy(x) for x in val) if isinstance(val, list) else truthy(val)
        if on and te.release[:1] >= (2,):
            problems.append(f"{src}={val}: DelayedScaling lost `override_linear_precision` in TE 2.0, "
                            f"so TE {te} raises TypeError")
    if not problems:
        return None
    return Finding("versions.accelerate-te", Level.FAIL, "Accelerate would pass TE a recipe option this TE removed",
                   "\n".join(problems), "Remove these settings (leave interval at 1 and override_* unset).")


def check_accelerate_version(facts: dict[str, Any]) -> Finding | None:
    signs = intent(facts)
    version = pkg(facts, "accelerate")
    if not signs:
        return None
    if not version:
        return Finding("versions.accelerate", Level.FAIL, "Accelerate is not installed", intent_text(signs),
                       upgrade_line())
    gen = accelerate_generation(version)
    if "summary" not in gen:
        return Finding("versions.accelerate", Level.WARN, f"accelerate {version}: {gen['generation']}",
                       "The lab observed no release this old: the doctor makes no claim about it.", upgrade_line())
    if "AORecipeKwargs" not in gen["recipe_classes"]:
        return Finding("versions.accelerate", Level.FAIL,
                       f"accelerate {version} has no torchao backend and no TERecipeKwargs/AORecipeKwargs",
                       gen["summary"] + "; code importing them (e.g. LLaMA-Factory's FP8 path) fails.",
                       upgrade_line())
    if not gen.get("env_fp8_works", True):
        return Finding("versions.accelerate", Level.WARN, f"accelerate {version}: {gen['summary']}",
                       f"accelerate >= {accelerate_min()} is the first release where fp8 from the environment or an "
                       "`accelerate launch` config reaches the Accelerator and converts layers (lab-observed).",
                       upgrade_line())
    mx = facts.get("environ", {}).get("accelerate_fp8", {}).get("ACCELERATE_FP8_USE_MXFP8_BLOCK_SCALING")
    if mx and not gen["mxfp8_block_scaling_option"]:
        return Finding("versions.accelerate-mxfp8", Level.WARN,
                       f"ACCELERATE_FP8_USE_MXFP8_BLOCK_SCALING is ignored by accelerate {version}",
                       f"The option exists from accelerate {first_accelerate('mxfp8_block_scaling_option')}.",
                       upgrade_line(minimum=first_accelerate("mxfp8_block_scaling_option")))
    return Finding("versions.accelerate", Level.OK, f"accelerate {version}: {gen['summary']}")
