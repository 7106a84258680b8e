"""The facts `env` diagnoses, typed, and the one constructor that derives the engine's parts from the read ones.

`collect_facts` reads the machine and calls `build_facts`; the rule tests build facts with the same function, so a
rule sees in a test exactly the shape and the derived parts (generations, intent, effective precision) it sees in
the command.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from fp8doctor.knowledge.generations import accelerate_generation, transformers_generation
from fp8doctor.knowledge.precision import effective_precision, fp8_intent


class ConfigFact(TypedDict, total=False):
    path: str
    kind: str
    label: str
    data: dict[str, Any]
    duplicates: list[dict[str, Any]]


class Facts(TypedDict, total=False):
    fp8doctor: dict[str, Any]
    platform: dict[str, Any]
    gpu: dict[str, Any]
    torch_build: dict[str, Any]
    packages: dict[str, str | None]
    te_import: dict[str, Any]
    stack_import: dict[str, Any]
    runs: dict[str, Any]
    generations: dict[str, dict[str, Any]]
    environ: dict[str, Any]
    accelerate_config: dict[str, Any]
    configs: list[ConfigFact]
    probes: dict[str, Any]
    what_if: dict[str, dict[str, str | None]]
    intent: list[str]
    precision: dict[str, Any]
    collect_seconds: float


def build_facts(*, gpu: dict[str, Any], torch_build: dict[str, Any], packages: Mapping[str, str | None],
                te_import: dict[str, Any], environ: dict[str, Any], accelerate_config: dict[str, Any],
                configs: list[ConfigFact], what_if: Mapping[str, str] | None = None, **read: Any) -> Facts:
    """The facts from what was read; `what_if` replaces installed versions ({package: version}) before anything is
    derived from them (nothing is installed)."""
    replaced = {name: {"installed": packages.get(name), "asked": v} for name, v in (what_if or {}).items()}
    versions = {**packages, **(what_if or {})}
    facts: Facts = {**read, "gpu": gpu, "torch_build": torch_build, "packages": versions,  # type: ignore[typeddict-item]
                    "te_import": te_import, "environ": environ, "accelerate_config": accelerate_config,
                    "configs": configs,
                    "generations": {"accelerate": accelerate_generation(versions.get("accelerate")),
                                    "transformers": transformers_generation(versions.get("transformers"))}}
    if replaced:
        facts["what_if"] = replaced
    facts["intent"] = fp8_intent(facts)
    facts["precision"] = effective_precision(facts)
    return facts
