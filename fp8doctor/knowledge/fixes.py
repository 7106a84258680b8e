"""Fixes as data: what to change (environment, files, config edits) and the command to run, rendered in one place.

`env`, `repro`, `watch` and the report all print fixes through `render`, and tests/test_fixes_executed.py writes
each rendered fix to disk exactly as printed and runs it. A fix fits the command the user runs: an
`llamafactory-cli` fix for a LLaMA-Factory config, an `accelerate launch` or environment fix for a script.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from fp8doctor.knowledge.capability import TE_INSTALL, cc_str
from fp8doctor.knowledge.command_forms import CommandForm, launched, parse, plain
from fp8doctor.knowledge.frontends import AXOLOTL, AXOLOTL_ALL_GATHER_KEY, AXOLOTL_FP8_MIN_CC, frontend_of_command
from fp8doctor.knowledge.generations import accelerate_generation, accelerate_min, intended_backend
from fp8doctor.knowledge.optimizer_params import ALL_GATHER, ALL_GATHER_VAR, SENTENCE, all_gather
from fp8doctor.knowledge.values import truthy

TE_UNPROVEN = ("Transformer Engine needs a CUDA GPU: this fix cannot be run on a CPU machine, so fp8doctor's tests "
               "have not executed it (the torchao form of the same fix is executed).")
ACCELERATE_YAML = "accelerate_fp8.yaml"
TE_RECIPE = {"fp8_format": "HYBRID", "amax_compute_algo": "max", "amax_history_len": 1024}
LF_BACKEND = {"AO": "torchao", "TE": "te"}


@dataclass(frozen=True)
class FixFile:
    """A whole file to write (content is data, dumped as YAML)."""

    path: str
    data: dict[str, Any]

    def text(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False)


@dataclass(frozen=True)
class Fix:
    key: str  # launch | env | llamafactory | trl | axolotl | upgrade
    title: str
    backend: str  # AO | TE
    install: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    files: tuple[FixFile, ...] = ()
    edits: dict[str, dict[str, Any]] = field(default_factory=dict)  # existing file -> keys to set
    command: tuple[str, ...] = ()
    note: str = ""

    @property
    def proven_on_cpu(self) -> bool:
        return self.backend == "AO"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rendered"] = render(self)
        return d


def render(fix: Fix) -> list[str]:
    """The fix as lines a user can paste into a shell: comments, installs, heredoc files, exports, the command.
    Edits of the user's own files are comments naming the file and the YAML keys to set."""
    lines = [f"# {fix.title}"]
    if fix.note:
        lines += [f"# {part}" for part in fix.note.splitlines()]
    lines += list(fix.install)
    for path, keys in fix.edits.items():
        lines.append(f"# in {path}, set:")
        lines += [f"#   {line}" for line in yaml.safe_dump(keys, sort_keys=False).splitlines()]
    for f in fix.files:
        lines.append(f"cat > {shlex.quote(f.path)} <<'YAML'")
        lines += f.text().splitlines()
        lines.append("YAML")
    if fix.env:
        lines.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in fix.env.items()))
    if fix.command:
        lines.append(shlex.join(fix.command))
    return lines


def render_all(fixes: list[Fix]) -> str:
    return "\n".join("\n".join(render(f)) for f in fixes)


def accelerate_yaml(backend: str, all_gather_off: bool = False) -> dict[str, Any]:
    """A config `accelerate launch --config_file` accepts (it refuses one without distributed_type); all_gather_off
    keeps torchao's FP8 weights in the optimizer (knowledge/optimizer_params)."""
    fp8: dict[str, Any] = {"backend": backend}
    if backend == "TE":
        fp8.update(TE_RECIPE)
    if backend == "AO" and all_gather_off:
        fp8[ALL_GATHER] = False
    return {"compute_environment": "LOCAL_MACHINE", "distributed_type": "NO", "num_machines": 1,
            "num_processes": 1, "mixed_precision": "fp8", "fp8_config": fp8}


def upgrade_line(package: str = "accelerate", minimum: str | None = None) -> str:
    """The install line of an upgrade fix (accelerate: to the first observed release where fp8 from the environment
    or an `accelerate launch` config trains in FP8)."""
    return f"pip install '{package}>={minimum or accelerate_min()}'"


def _upgrade(accelerate: str | None) -> tuple[str, ...]:
    gen = accelerate_generation(accelerate)
    if gen.get("installed") and gen.get("env_fp8_works") is False:
        return (upgrade_line(),)
    return ()


def _all_gather_off(backend: str, accelerate: str | None) -> bool:
    """Whether Accelerate's own torchao config (of this release, or of the one the fix upgrades to) would leave the
    FP8 weights out of the optimizer."""
    return backend == "AO" and bool(all_gather(accelerate, {}, None) or _upgrade(accelerate))


def keep_in_optimizer_env(backend: str, accelerate: str | None) -> dict[str, str]:
    """The variable that keeps torchao's FP8 weights in the optimizer where Accelerate's own config would not."""
    return {ALL_GATHER_VAR: "false"} if _all_gather_off(backend, accelerate) else {}


# `accelerate launch` with fp8 from its command line exports every fp8_* option, this one with its default True
# (1.13+: read in commands/launch.py and utils/launch.setup_fp8_env), over the shell's variable: a launched command
# takes the option itself (the TRL CLI passes the options it does not know to its accelerate launch). Executed:
# tests/test_trl_fix_executed.py (TRL 1.16, accelerate 1.15), tests/test_watch_not_trained.py (accelerate launch).
LAUNCH_ALL_GATHER = ("--fp8_enable_fsdp_float8_all_gather", "false")


def keep_in_optimizer_launch(backend: str, accelerate: str | None) -> tuple[str, ...]:
    """The launch option that keeps torchao's FP8 weights in the optimizer where Accelerate's would not."""
    return LAUNCH_ALL_GATHER if _all_gather_off(backend, accelerate) else ()


def _te(backend: str) -> tuple[tuple[str, ...], str]:
    return ((TE_INSTALL,), TE_UNPROVEN) if backend == "TE" else ((), "")


def launch_fix(backend: str, form: CommandForm, accelerate: str | None,
               edits: dict[str, dict[str, Any]] | None = None) -> Fix | None:
    """The user's command started through `accelerate launch` with a complete FP8 config; None where the command
    cannot be (torchrun, a frontend's entry point, a command fp8doctor cannot read)."""
    command = launched(form, ACCELERATE_YAML)
    if command is None:
        return None
    install, note = _te(backend)
    config = FixFile(ACCELERATE_YAML, accelerate_yaml(backend, _all_gather_off(backend, accelerate)))
    return Fix("launch", f"start the script through accelerate launch with an FP8 config ({backend})", backend,
               install=_upgrade(accelerate) + install, files=(config,),
               edits=edits or {}, command=command, note=note)


def env_fix(backend: str, form: CommandForm, accelerate: str | None,
            edits: dict[str, dict[str, Any]] | None = None) -> Fix | None:
    """FP8 through the environment, the command unchanged; None under `accelerate launch`, which sets
    ACCELERATE_MIXED_PRECISION itself from its config and options."""
    if form.kind == "launch":
        return None
    install, note = _te(backend)
    return Fix("env", f"or, without accelerate launch: FP8 through the environment ({backend})", backend,
               install=_upgrade(accelerate) + install,
               env={"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": backend,
                    **keep_in_optimizer_env(backend, accelerate)},
               edits=edits or {}, command=plain(form), note=note)


def llamafactory_fix(backend: str, config_path: str, accelerate: str | None,
                     cli: tuple[str, ...] = ("llamafactory-cli", "train")) -> Fix:
    """LLaMA-Factory: its own fp8 options, no bf16 (which TrainingArguments turns into the Accelerator's precision),
    started with llamafactory-cli (as the user named it). An Accelerate YAML never applies there."""
    install, note = _te(backend)
    edits = {config_path: {"fp8": True, "fp8_backend": LF_BACKEND[backend], "bf16": False}}
    env = {"ACCELERATE_MIXED_PRECISION": "fp8", **keep_in_optimizer_env(backend, accelerate)}
    if backend == "TE":  # LLaMA-Factory exports FP8_BACKEND, which Accelerate never reads; torchao would win
        env["ACCELERATE_FP8_BACKEND"] = "TE"
    return Fix("llamafactory", f"LLaMA-Factory in FP8 ({LF_BACKEND[backend]})", backend,
               install=_upgrade(accelerate) + install, env=env, edits=edits,
               command=(*cli, config_path), note=note)


def _llamafactory(facts: dict[str, Any], form: CommandForm, backend: str, accelerate: str | None) -> Fix:
    lf = [c for c in facts.get("configs", []) if c.get("kind") == "llamafactory"]
    if form.frontend == "llamafactory":
        sub = form.args[:1] or ("train",)
        path = lf[0]["path"] if lf else (form.args[1] if len(form.args) > 1 else "cfg.yaml")
        return llamafactory_fix(backend, path, accelerate, (*form.launcher, *sub))
    return llamafactory_fix(backend, lf[0]["path"], accelerate)


TRL_ARGS = "your SFTConfig / DPOConfig / GRPOConfig (TRL)"
TRL_REPLACED = ("--bf16", "--mixed_precision", "--mixed-precision", "--fp8_backend", "--fp8-backend")


def _without(args: tuple[str, ...], names: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    skip = False
    for tok in args:
        if skip:
            skip = False
            continue
        if tok.split("=", 1)[0] in names:
            skip = "=" not in tok
            continue
        out.append(tok)
    return tuple(out)


def trl_command(data: dict[str, Any]) -> str:
    """The `trl` sub-command a TRL YAML is for, from the keys only its trainer has."""
    if {"num_generations", "reward_funcs", "max_completion_length"} & set(data):
        return "grpo"
    return "dpo" if {"beta", "max_prompt_length"} & set(data) else "sft"


def trl_fix(backend: str, form: CommandForm, accelerate: str | None, config_path: str | None = None) -> Fix:
    """TRL >= 0.19 turns an unset bf16 into True in its configs, which then outvotes fp8: bf16 off in TRL's own
    config, fp8 given where this command takes it. The `trl` CLI runs `accelerate launch` itself, which sets
    ACCELERATE_MIXED_PRECISION from its own options ('no' unless given): there fp8 goes on its command line."""
    install, note = _te(backend)
    if form.frontend == "trl":
        # The backend travels as a variable: launch's own --fp8_backend takes only lowercase names, which the
        # Accelerator then refuses (LAUNCH_FP8_BACKEND_REFUSED).
        extra = () if config_path else ("--bf16", "false")
        command = (*form.launcher, *_without(form.args, TRL_REPLACED + LAUNCH_ALL_GATHER[:1]), *extra,
                   "--mixed_precision", "fp8", *keep_in_optimizer_launch(backend, accelerate))
        return Fix("trl", f"TRL in FP8: bf16 off in its config, fp8 through its accelerate launch ({backend})",
                   backend, install=_upgrade(accelerate) + install, env={"ACCELERATE_FP8_BACKEND": backend},
                   edits={config_path: {"bf16": False}} if config_path else {}, command=command, note=note)
    edits = {config_path or TRL_ARGS: {"bf16": False}}
    if form.kind == "launch":
        fix = launch_fix(backend, form, accelerate)
        assert fix is not None
        return Fix("trl", f"TRL in FP8: bf16 off in its config, fp8 from the accelerate launch config ({backend})",
                   backend, install=fix.install, files=fix.files, edits=edits, command=fix.command, note=note)
    return Fix("trl", f"TRL in FP8: bf16 off in its config, fp8 through the environment ({backend})", backend,
               install=_upgrade(accelerate) + install,
               env={"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": backend,
                    **keep_in_optimizer_env(backend, accelerate)}, edits=edits, command=plain(form), note=note)


AXOLOTL_CFG = "your axolotl config YAML"


def is_axolotl(form: CommandForm) -> bool:
    """`axolotl train cfg.yaml`, or axolotl's CLI module run by an interpreter or `accelerate launch -m`."""
    return frontend_of_command(form) is AXOLOTL


def _axolotl_config_arg(form: CommandForm) -> str | None:
    """The config file in the user's axolotl command: after the sub-command for the entry point, first for -m."""
    args = form.args[1:] if form.kind == "entry" else form.args
    return next((a for a in args if not a.startswith("-")), None)


def axolotl_fix(form: CommandForm, config_path: str | None, all_gather_off: bool = False) -> Fix:
    """axolotl sets ACCELERATE_MIXED_PRECISION from its config's own `fp8` key in the training process (after any
    launcher), and with it builds its own torchao recipe: `fp8: true` there, the command as the user ran it. An
    exported variable or an Accelerate FP8 config is replaced, so neither is offered. `all_gather_off`: also its
    float8 all-gather key false (without FSDP it leaves the FP8 weights outside the optimizer)."""
    path = config_path or _axolotl_config_arg(form) or AXOLOTL_CFG
    command = plain(form) if form.kind != "none" else ("axolotl", "train", path)
    keys: dict[str, Any] = {"fp8": True, **({AXOLOTL_ALL_GATHER_KEY: False} if all_gather_off else {})}
    return Fix("axolotl", "axolotl in FP8: its own fp8 key (axolotl builds the torchao recipe itself)", "AO",
               edits={path: keys}, command=command,
               note=f"axolotl refuses fp8 unless it sees a GPU of compute capability {cc_str(AXOLOTL_FP8_MIN_CC)} "
                    "or higher; it recommends `torch_compile: true` with fp8 (for speed)")


AO_OWN_CONFIG = ("in a script that builds its own Accelerator: kwargs_handlers=[AORecipeKwargs(config="
                 f"Float8LinearConfig({ALL_GATHER}=False, pad_inner_dim=True))] (accelerate.utils, torchao.float8)")


def optimizer_fix(form: CommandForm, config_path: str | None, fp8_config: dict[str, Any] | None = None) -> Fix:
    """Accelerate's own torchao config with float8 all-gather off, so the FP8 weights stay the optimizer's: the key
    in the config `accelerate launch` reads (config_path), else the variable it would export."""
    title = f"{SENTENCE}: keep them in the optimizer (torchao float8 all-gather off)"
    if config_path is not None:
        edits = {config_path: {"fp8_config": {**(fp8_config or {"backend": "AO"}), ALL_GATHER: False}}}
        return Fix("optimizer", title, "AO", edits=edits, command=launched(form, config_path) or (),
                   note=f"or, {AO_OWN_CONFIG}")
    if form.kind == "launch" or form.frontend == "trl":  # the command runs accelerate launch: its option
        return Fix("optimizer", title, "AO", command=with_launch_option(form), note=f"or, {AO_OWN_CONFIG}")
    return Fix("optimizer", title, "AO", env={ALL_GATHER_VAR: "false"}, command=plain(form),
               note=f"or, {AO_OWN_CONFIG}")


def with_launch_option(form: CommandForm) -> tuple[str, ...]:
    """An `accelerate launch` command (or the TRL CLI, which hands unknown options to its launch) with float8
    all-gather off on its command line."""
    if form.kind == "launch":
        return (*_without(form.launcher, LAUNCH_ALL_GATHER[:1]), *LAUNCH_ALL_GATHER, *form.target, *form.args)
    return (*form.launcher, *_without(form.args, LAUNCH_ALL_GATHER[:1]), *LAUNCH_ALL_GATHER)


def not_trained_fix(form: CommandForm, frontend: str | None, own_config: bool) -> Fix:
    """For FP8 weights seen outside the optimizer: axolotl's own key after an axolotl command; an edit of the
    script's own Float8LinearConfig where one was passed (no variable reaches it); else Accelerate's all-gather off
    for the command (a launch option where it runs `accelerate launch`, else the variable)."""
    if frontend == AXOLOTL.name or is_axolotl(form):
        return axolotl_fix(form, None, all_gather_off=True)
    if own_config:
        return Fix("optimizer", f"{SENTENCE}: your own torchao config has {ALL_GATHER}=True", "AO",
                   command=plain(form), note=f"in your script, pass Float8LinearConfig({ALL_GATHER}=False) to "
                   "AORecipeKwargs(config=...) (the flag is for FSDP2's float8 all-gather; without FSDP it only "
                   "gives the weights new Parameters after the optimizer was built)")
    return optimizer_fix(form, None)


def fixes_for(facts: dict[str, Any], backend: str) -> list[Fix]:
    """The fixes that make FP8 reach the Accelerator for the installed versions and the command the user runs."""
    accelerate = facts.get("packages", {}).get("accelerate")
    form = parse(facts.get("command"))
    if form.frontend == "llamafactory" or any(c.get("kind") == "llamafactory" for c in facts.get("configs", [])):
        return [_llamafactory(facts, form, backend, accelerate)]
    axolotl_cfgs = [c for c in facts.get("configs", []) if c.get("kind") == "axolotl"]
    if is_axolotl(form) or axolotl_cfgs or facts.get("frontend") == "axolotl":
        return [axolotl_fix(form, axolotl_cfgs[0]["path"] if axolotl_cfgs else None)]
    trl_cfgs = [c for c in facts.get("configs", []) if c.get("kind") == "trl"]
    if form.frontend == "trl" or trl_cfgs or facts.get("frontend") == "TRL":
        if trl_cfgs and form.kind == "none":  # a TRL YAML is given to the trl CLI
            form = parse(["trl", trl_command(trl_cfgs[0]["data"]), "--config", trl_cfgs[0]["path"]])
        return [trl_fix(backend, form, accelerate, trl_cfgs[0]["path"] if trl_cfgs else None)]
    edits: dict[str, dict[str, Any]] = {}
    for c in facts.get("configs", []):
        if c.get("kind") == "training_args":
            flags = {k: False for k in ("bf16", "fp16") if truthy(c["data"].get(k))}
            if flags:
                edits[c["path"]] = flags
    found = [launch_fix(backend, form, accelerate, edits), env_fix(backend, form, accelerate, edits)]
    return [f for f in found if f is not None]


def fix_lines(facts: dict[str, Any]) -> list[str]:
    """The fixes for the installed versions and the user's command, rendered."""
    return render_all(fixes_for(facts, intended_backend(facts))).splitlines()
