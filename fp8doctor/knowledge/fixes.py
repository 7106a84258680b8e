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

from fp8doctor.knowledge.capability import TE_INSTALL
from fp8doctor.knowledge.generations import accelerate_generation, accelerate_min, intended_backend
from fp8doctor.knowledge.intent import truthy

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
    key: str  # launch | env | llamafactory | trainer | upgrade
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


def accelerate_yaml(backend: str) -> dict[str, Any]:
    """A config `accelerate launch --config_file` accepts (it refuses one without distributed_type)."""
    fp8: dict[str, Any] = {"backend": backend}
    if backend == "TE":
        fp8.update(TE_RECIPE)
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


def _te(backend: str) -> tuple[tuple[str, ...], str]:
    return ((TE_INSTALL,), TE_UNPROVEN) if backend == "TE" else ((), "")


def launch_fix(backend: str, script: list[str], accelerate: str | None,
               edits: dict[str, dict[str, Any]] | None = None) -> Fix:
    install, note = _te(backend)
    return Fix("launch", f"start the script through accelerate launch with an FP8 config ({backend})", backend,
               install=_upgrade(accelerate) + install, files=(FixFile(ACCELERATE_YAML, accelerate_yaml(backend)),),
               edits=edits or {}, command=("accelerate", "launch", "--config_file", ACCELERATE_YAML, *script),
               note=note)


def env_fix(backend: str, script: list[str], accelerate: str | None,
            edits: dict[str, dict[str, Any]] | None = None) -> Fix:
    install, note = _te(backend)
    return Fix("env", f"or, without accelerate launch: FP8 through the environment ({backend})", backend,
               install=_upgrade(accelerate) + install,
               env={"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": backend},
               edits=edits or {}, command=("python", *script) if script[:1] != ["python"] else tuple(script),
               note=note)


def llamafactory_fix(backend: str, config_path: str, accelerate: str | None) -> Fix:
    """LLaMA-Factory: its own fp8 options, no bf16 (which TrainingArguments turns into the Accelerator's precision),
    started with llamafactory-cli. An Accelerate YAML never applies there."""
    install, note = _te(backend)
    edits = {config_path: {"fp8": True, "fp8_backend": LF_BACKEND[backend], "bf16": False}}
    env = {"ACCELERATE_MIXED_PRECISION": "fp8"}
    if backend == "TE":  # LLaMA-Factory exports FP8_BACKEND, which Accelerate never reads; torchao would win
        env["ACCELERATE_FP8_BACKEND"] = "TE"
    return Fix("llamafactory", f"LLaMA-Factory in FP8 ({LF_BACKEND[backend]})", backend,
               install=_upgrade(accelerate) + install, env=env, edits=edits,
               command=("llamafactory-cli", "train", config_path), note=note)


def _script(facts: dict[str, Any]) -> list[str]:
    cmd = facts.get("command") or []
    if cmd and cmd[0] not in ("accelerate", "llamafactory-cli", "torchrun"):
        return list(cmd[1:]) if cmd[0].startswith("python") else list(cmd)
    if cmd[:2] == ["accelerate", "launch"]:
        rest = [c for c in cmd[2:] if not c.startswith("-")]
        return rest[-1:] or ["train.py"]
    return ["train.py"]


def fixes_for(facts: dict[str, Any], backend: str) -> list[Fix]:
    """The fixes that make FP8 reach the Accelerator for the installed versions and the command the user runs."""
    accelerate = facts.get("packages", {}).get("accelerate")
    cmd = facts.get("command") or []
    lf = [c for c in facts.get("configs", []) if c.get("kind") == "llamafactory"]
    if lf or (cmd and cmd[0].endswith("llamafactory-cli")):
        path = lf[0]["path"] if lf else (cmd[2] if len(cmd) > 2 else "cfg.yaml")
        return [llamafactory_fix(backend, path, accelerate)]
    edits: dict[str, dict[str, Any]] = {}
    for c in facts.get("configs", []):
        if c.get("kind") == "training_args":
            flags = {k: False for k in ("bf16", "fp16") if truthy(c["data"].get(k))}
            if flags:
                edits[c["path"]] = flags
    script = _script(facts)
    return [launch_fix(backend, script, accelerate, edits), env_fix(backend, script, accelerate, edits)]


def fix_lines(facts: dict[str, Any]) -> list[str]:
    """The fixes for the installed versions and the user's command, rendered."""
    return render_all(fixes_for(facts, intended_backend(facts))).splitlines()
