"""The user's FP8 intent, read once from the environment and every config: what they ask for (signs, backend,
precision) and how their training starts (frontend, launcher). `env`'s rules, the fixes, repro's backend choice and
the engine's setup all read it from here.

Backends are named as Accelerate's FP8BackendType names them: TE, AO, MSAMP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fp8doctor.knowledge.engine import Setup
from fp8doctor.knowledge.frontends import axolotl_mixed_precision, trl_bf16
from fp8doctor.knowledge.values import truthy

# The values each library accepts for its backend setting, as the doctor's backend names (None: none chosen).
LLAMAFACTORY_BACKENDS = {"te": "TE", "transformer_engine": "TE", "torchao": "AO", "ao": "AO", "auto": None}
ACCELERATE_BACKENDS = {"TE": "TE", "AO": "AO", "TORCHAO": "AO", "MSAMP": "MSAMP", "NO": None}
TRAINING_KINDS = ("llamafactory", "training_args", "trl")


def resolved(cfg: Mapping[str, Any], packages: Mapping[str, Any]) -> Mapping[str, Any]:
    """A config with the values its frontend's config class will hold: a TRL config's unset bf16 becomes what the
    installed TRL turns it into (True from 0.19; the newest observed behaviour when TRL is not installed here)."""
    data = cfg.get("data") or {}
    if cfg.get("kind") != "trl" or data.get("bf16") is not None:
        return cfg
    held = trl_bf16(packages.get("trl"), None, fp16=truthy(data.get("fp16")))
    return {**cfg, "data": {**data, "bf16": True if held is None else held}}


def axolotl_sets(data: Mapping[str, Any]) -> str:
    """ACCELERATE_MIXED_PRECISION as axolotl sets it in the training process from this config (`bf16: auto` taken
    as bf16, what it is on a GPU that has it)."""
    return axolotl_mixed_precision({"fp8": truthy(data.get("fp8")), "fp16": truthy(data.get("fp16")),
                                    "bf16": data.get("bf16") == "auto" or truthy(data.get("bf16"))})


def _ds_enabled(section: Any) -> bool:
    return isinstance(section, dict) and truthy(section.get("enabled"))


def training_precision(data: Mapping[str, Any], kind: str) -> str | None:
    """What a training config sets on TrainingArguments: fp16 > bf16 > None (neither)."""
    if kind == "deepspeed":
        if _ds_enabled(data.get("fp16")):
            return "fp16"
        return "bf16" if _ds_enabled(data.get("bf16")) else None
    if truthy(data.get("fp16")):
        return "fp16"
    if truthy(data.get("bf16")):
        return "bf16"
    return None


@dataclass(frozen=True)
class LaunchConfig:
    """The Accelerate config `accelerate launch` would use, and the command that applies it."""

    path: str
    data: Mapping[str, Any]
    how: str

    @property
    def mixed_precision(self) -> str | None:
        mp = self.data.get("mixed_precision")
        return None if mp is None else str(mp)


@dataclass(frozen=True)
class Intent:
    signs: tuple[str, ...] = ()  # every sign that the user means to train in FP8 (empty: none)
    backends: Mapping[str, str] = field(default_factory=dict)  # TE / AO / MSAMP -> where the user named it
    precision: str | None = None  # bf16 / fp16 set by the last training config (TrainingArguments)
    frontend: str = "script"  # script / trainer / llamafactory
    lf_fp8: Mapping[str, Any] = field(default_factory=dict)  # the LLaMA-Factory config's FP8 keys
    lf_path: str | None = None
    launch: LaunchConfig | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # ACCELERATE_MIXED_PRECISION / ACCELERATE_FP8_* of the shell

    @property
    def wanted(self) -> bool:
        return bool(self.signs)

    def setup(self, *, launched: bool = False) -> Setup:
        """The engine's input for starting this training plainly (python, torchrun, llamafactory-cli) or, with
        `launched`, through `accelerate launch` of the launch config."""
        return Setup(frontend=self.frontend, env=dict(self.env), precision=self.precision, lf_fp8=dict(self.lf_fp8),
                     launch_yaml=self.launch.data if launched and self.launch else None)


def _launch_config(configs: list[dict[str, Any]], acc: Mapping[str, Any]) -> LaunchConfig | None:
    """A file named with --config applies through `accelerate launch --config_file FILE`; the default-location file
    through a bare `accelerate launch`. Neither applies to `python train.py`, torchrun or llamafactory-cli."""
    found = None
    for c in configs:
        if c.get("kind") == "accelerate" and isinstance(c.get("data"), dict):
            found = LaunchConfig(c["path"], c["data"], f"accelerate launch --config_file {c['path']}")
    if found is None and acc.get("exists") and isinstance(acc.get("data"), dict):
        how = ("accelerate launch" if acc.get("chosen_by") == "default location"
               else f"accelerate launch --config_file {acc.get('path')}")
        found = LaunchConfig(str(acc.get("path")), acc["data"], how)
    return found


def _accelerate_signs(path: str, data: Mapping[str, Any], signs: list[str], backends: dict[str, str]) -> None:
    mp = data.get("mixed_precision")
    if str(mp or "").lower() == "fp8":
        signs.append(f"{path}: mixed_precision: fp8")
    fp8 = data.get("fp8_config")
    if isinstance(fp8, dict) and fp8:
        if str(mp or "").lower() != "fp8":
            signs.append(f"{path}: fp8_config (under mixed_precision: {mp if mp is not None else 'unset'})")
        b = ACCELERATE_BACKENDS.get(str(fp8.get("backend", "")).upper())
        if b:
            backends.setdefault(b, f"{path}: fp8_config backend {fp8['backend']}")


def read_intent(facts: Mapping[str, Any]) -> Intent:
    """The one reading of the user's FP8 intent from a facts dict (`configs`, `environ`, `accelerate_config`)."""
    signs: list[str] = []
    backends: dict[str, str] = {}
    environ = facts.get("environ", {})
    fp8_vars = dict(environ.get("accelerate_fp8", {}))
    shell_mp = environ.get("mixed_precision")
    env = {**({"ACCELERATE_MIXED_PRECISION": str(shell_mp)} if shell_mp is not None else {}),
           **{k: str(v) for k, v in fp8_vars.items()}}
    env_backend = ACCELERATE_BACKENDS.get(str(fp8_vars.get("ACCELERATE_FP8_BACKEND", "")).upper())
    if env_backend:
        backends[env_backend] = "ACCELERATE_FP8_BACKEND"
    configs = [resolved(c, facts.get("packages", {})) for c in facts.get("configs", [])
               if isinstance(c.get("data"), dict)]
    precision, frontend, lf_fp8, lf_path = None, "script", {}, None
    for cfg in configs:
        kind, data, path = cfg.get("kind"), cfg["data"], cfg.get("path", "?")
        if kind == "deepspeed" and "fp8" in data:
            signs.append(f"{path}: DeepSpeed `fp8` section")
        elif truthy(data.get("fp8")) and not isinstance(data.get("fp8"), dict):
            signs.append(f"{path}: fp8: true")
        if kind == "accelerate":
            _accelerate_signs(path, data, signs, backends)
        elif str(data.get("mixed_precision", "")).lower() == "fp8":
            signs.append(f"{path}: mixed_precision: fp8")
        if kind in TRAINING_KINDS:
            precision = training_precision(data, kind) or precision
            frontend = "llamafactory" if kind == "llamafactory" or frontend == "llamafactory" else "trainer"
        if kind == "axolotl":  # it replaces the variable in the training process, whatever the shell exported
            env["ACCELERATE_MIXED_PRECISION"] = axolotl_sets(data)
        if kind == "llamafactory":
            lf_fp8 = {k: data[k] for k in ("fp8", "fp8_backend", "stage") if k in data}
            lf_path = path
            b = LLAMAFACTORY_BACKENDS.get(str(data.get("fp8_backend", "")).lower())
            if b and truthy(data.get("fp8")):
                backends.setdefault(b, f"{path}: fp8_backend {data['fp8_backend']}")
    if str(shell_mp or "").lower() == "fp8":
        signs.append("ACCELERATE_MIXED_PRECISION=fp8")
    signs += [f"{name} is set" for name in fp8_vars]
    acc = facts.get("accelerate_config", {})
    if acc.get("exists") and isinstance(acc.get("data"), dict):
        _accelerate_signs(str(acc.get("path")), acc["data"], signs, backends)
    return Intent(signs=tuple(signs), backends=backends, precision=precision, frontend=frontend, lf_fp8=lf_fp8,
                  lf_path=lf_path, launch=_launch_config(configs, acc), env=env)


def chosen_backend(intent: Intent, packages: Mapping[str, Any], te_usable: bool) -> str:
    """TE or AO, the backend the fixes name: the one the user names (MS-AMP is not offered as a fix), else TE when it
    imports, else torchao when installed, else TE. This is not Accelerate's own order (torchao first,
    predict.auto_backends): every fix names its backend, so that order never applies to it."""
    for name in intent.backends:
        if name in ("TE", "AO"):
            return name
    if packages.get("transformer-engine") and te_usable:
        return "TE"
    return "AO" if packages.get("torchao") else "TE"
