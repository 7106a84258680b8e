"""The shape of the command a user trains with, so that a fix is printed for that command and no other.

A fix keeps what the user wrote: an interpreter (`/venv/bin/python -u`) stays the interpreter and its script stays
the script, `python -m pkg` stays a module run, `./train.py` stays an executable script, and a launcher or a
frontend's console entry point (`accelerate launch`, `torchrun`, `llamafactory-cli`, `trl`, `axolotl`) keeps its
form and its options. Pure functions on argv lists; the boolean options are those of accelerate 1.15's and
torch 2.13's own parsers (every other option of theirs takes a value).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

PYTHON = re.compile(r"python(\d+(\.\d+)?)?t?$")
ACCELERATE_LAUNCH_MODULE = "accelerate.commands.launch"
TORCHRUN_MODULE = "torch.distributed.run"
ENTRY_POINTS = {"llamafactory-cli": "llamafactory", "lmf": "llamafactory", "trl": "trl", "axolotl": "axolotl"}
# Interpreter options that take a value (python --help); every other option of the interpreter is a flag.
PYTHON_VALUE_OPTIONS = {"-W", "-X", "--check-hash-based-pycs"}
LAUNCH_FLAGS = {
    "--cpu", "--debug", "--downcast-bf16", "--downcast_bf16", "--dynamo-use-dynamic", "--dynamo-use-fullgraph",
    "--dynamo-use-regional-compilation", "--dynamo_use_dynamic", "--dynamo_use_fullgraph",
    "--dynamo_use_regional_compilation", "--enable-cpu-affinity", "--enable_cpu_affinity",
    "--fp8-use-autocast-during-eval", "--fp8_use_autocast_during_eval", "--module", "--multi-gpu", "--multi_gpu",
    "--no-python", "--no-tpu-cluster", "--no_python", "--no_tpu_cluster", "--quiet", "--same-network",
    "--same_network", "--tpu", "--tpu-cluster", "--tpu-use-sudo", "--tpu_cluster", "--tpu_use_sudo",
    "--use-deepspeed", "--use-fsdp", "--use-megatron-lm", "--use-parallelism-config", "--use_deepspeed",
    "--use_fsdp", "--use_megatron_lm", "--use_parallelism_config", "-m", "-q",
}
TORCHRUN_FLAGS = {"--standalone", "--no-python", "--no_python", "-m", "--module", "--run-path", "--run_path",
                  "--virtual-local-rank", "--virtual_local_rank"}
# accelerate launch options a launch fix replaces: the config file is the fix's, and a precision given on the command
# line would win over it.
LAUNCH_REPLACED = {"--config_file", "--config-file", "--mixed_precision", "--mixed-precision", "--fp8_backend",
                   "--fp8-backend"}


@dataclass(frozen=True)
class CommandForm:
    """kind: python (an interpreter running a script or -m module), script (an executable script), launch
    (accelerate launch), torchrun, entry (a frontend's console entry point), other, none (no command known).
    `launcher` is everything before the target: the interpreter and its options, or the launcher and its options;
    `target` is (script,) or ("-m", module); `args` are the script's."""

    kind: str
    launcher: tuple[str, ...] = ()
    target: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    frontend: str = ""

    @property
    def argv(self) -> tuple[str, ...]:
        return (*self.launcher, *self.target, *self.args)


def _split(tokens: list[str], flags: set[str], launcher: list[str], value_all: bool = True) -> CommandForm | None:
    """Options (with their values) until the first positional: (options, target, args)."""
    i = 0
    module = False
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--":
            i += 1
            break
        if not tok.startswith("-") or tok == "-":
            break
        if tok in ("-m", "--module"):
            module = True
        i += 1 if ("=" in tok or tok in flags or not value_all) else 2
    if i >= len(tokens):
        return None
    opts = [t for t in tokens[:i] if t not in ("-m", "--module")]
    target = ("-m", tokens[i]) if module else (tokens[i],)
    return CommandForm("", (*launcher, *opts), target, tuple(tokens[i + 1:]))


def _python(cmd: list[str]) -> CommandForm:
    i = 1
    while i < len(cmd) and cmd[i].startswith("-") and cmd[i] not in ("-m", "-c", "-"):
        i += 2 if cmd[i] in PYTHON_VALUE_OPTIONS else 1
    interp = tuple(cmd[:i])
    if i >= len(cmd) or cmd[i] in ("-c", "-"):
        return CommandForm("other", tuple(cmd))
    if cmd[i] == "-m":
        if i + 1 >= len(cmd):
            return CommandForm("other", tuple(cmd))
        module, rest = cmd[i + 1], cmd[i + 2:]
        if module == ACCELERATE_LAUNCH_MODULE:
            return _launch(rest, [*interp, "-m", module])
        if module == TORCHRUN_MODULE:
            return _torchrun(rest, [*interp, "-m", module])
        return CommandForm("python", interp, ("-m", module), tuple(rest))
    return CommandForm("python", interp, (cmd[i],), tuple(cmd[i + 1:]))


def _launch(rest: list[str], launcher: list[str]) -> CommandForm:
    form = _split(rest, LAUNCH_FLAGS, launcher)
    if form is None:
        return CommandForm("other", (*launcher, *rest))
    return CommandForm("launch", form.launcher, form.target, form.args)


def _torchrun(rest: list[str], launcher: list[str]) -> CommandForm:
    form = _split(rest, TORCHRUN_FLAGS, launcher)
    if form is None:
        return CommandForm("other", (*launcher, *rest))
    return CommandForm("torchrun", form.launcher, form.target, form.args)


def parse(cmd: list[str] | tuple[str, ...] | None) -> CommandForm:
    """The form of a command line (argv as the user gave it to `fp8doctor watch --`)."""
    cmd = [str(c) for c in cmd or []]
    if not cmd:
        return CommandForm("none")
    base = os.path.basename(cmd[0])
    if PYTHON.match(base):
        return _python(cmd)
    if base == "accelerate" and cmd[1:2] == ["launch"]:
        return _launch(cmd[2:], cmd[:2])
    if base == "torchrun":
        return _torchrun(cmd[1:], cmd[:1])
    if base in ENTRY_POINTS:
        return CommandForm("entry", (cmd[0],), (), tuple(cmd[1:]), ENTRY_POINTS[base])
    if base.endswith(".py"):
        return CommandForm("script", (), (cmd[0],), tuple(cmd[1:]))
    return CommandForm("other", tuple(cmd))


def parse_process(argv: list[str] | tuple[str, ...], executable: str | None = None) -> CommandForm:
    """The form of an observed Python process from its script argv (`sys.argv`, `-m module` restored) and its
    interpreter: a console entry point or launcher is its own script; a module or a .py file runs under executable."""
    argv = [str(a) for a in argv]
    if argv[:1] == ["-m"] or (argv and argv[0].endswith(".py")):
        return parse([executable or "python", *argv])
    return parse(argv)


def plain(form: CommandForm, default_script: str = "train.py") -> tuple[str, ...]:
    """The command as the user ran it (a fix through the environment changes nothing in it)."""
    if form.kind == "none":
        return ("python", default_script)
    return form.argv


def launched(form: CommandForm, config_file: str, default_script: str = "train.py") -> tuple[str, ...] | None:
    """The command started through `accelerate launch --config_file CONFIG`, run by the interpreter the user named;
    None where a launch fix does not fit (torchrun, a frontend's entry point, a command fp8doctor cannot read)."""
    if form.kind == "none":
        return ("accelerate", "launch", "--config_file", config_file, default_script)
    if form.kind == "launch":
        n_prefix = 3 if form.launcher[1:2] == ("-m",) else 2
        head, opts = form.launcher[:n_prefix], form.launcher[n_prefix:]
        kept: list[str] = []
        skip = False
        for tok in opts:
            if skip:
                skip = False
                continue
            name = tok.split("=", 1)[0]
            if name in LAUNCH_REPLACED:
                skip = "=" not in tok
                continue
            kept.append(tok)
        return (*head, "--config_file", config_file, *kept, *form.target, *form.args)
    if form.kind == "python":
        interp = form.launcher
        runner = (("accelerate", "launch") if "/" not in interp[0] and len(interp) == 1
                  else (*interp, "-m", ACCELERATE_LAUNCH_MODULE))
        return (*runner, "--config_file", config_file, *form.target, *form.args)
    if form.kind == "script":
        return ("accelerate", "launch", "--config_file", config_file, *form.target, *form.args)
    return None
