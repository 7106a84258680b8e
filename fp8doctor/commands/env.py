"""`fp8doctor env`: collect facts, evaluate rules, render. Exit 0 ok, 1 a finding failed, 2 bad input."""

from __future__ import annotations

import argparse

from fp8doctor.findings import exit_code
from fp8doctor.render.findings import FORMATS
from fp8doctor.system.errors import UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "env", help="diagnose this machine's FP8 setup and lint training configs",
        description="Collect every FP8-relevant fact (GPU, versions, environment, Accelerate config), lint the "
                    "given configs, and report each problem with its fix.",
    )
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="a LLaMA-Factory YAML, Accelerate config, DeepSpeed JSON or TrainingArguments JSON "
                        "(repeatable)")
    p.add_argument("--accelerate-config", metavar="FILE",
                   help="the Accelerate config to check (default: ACCELERATE_CONFIG_FILE, then "
                        "$HF_HOME/accelerate/default_config.yaml)")
    p.add_argument("--what-if", action="append", default=[], metavar="PKG==VER",
                   help="diagnose as if this release of accelerate, transformers, torchao or llamafactory were "
                        "installed instead (repeatable; nothing is installed: the engine answers from the lab's "
                        "observations)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format")
    p.add_argument("--list-checks", action="store_true",
                   help="list every check's stable id, what it checks and the finding ids it gives, then exit")
    p.add_argument("--check", action="append", default=[], metavar="ID",
                   help="run only this check (repeatable; ids from --list-checks); the facts are still shown")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fp8doctor.rules import registry

    if args.list_checks:
        if args.check:
            raise UsageError("--list-checks lists every check; give --check without it to run some")
        print(registry.listing(args.format), end="")
        return 0
    selected = registry.select(args.check) if args.check else registry.CHECKS

    from fp8doctor.facts.collect import collect_facts
    from fp8doctor.findings import run_checks
    from fp8doctor.knowledge.releases import parse_what_if
    from fp8doctor.render.findings import render

    try:
        what_if = parse_what_if(args.what_if)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    facts = collect_facts(config_paths=args.config, accelerate_config=args.accelerate_config, what_if=what_if,
                          probe_imports="stack.imports" in args.check)
    findings = run_checks([c.run for c in selected], facts)
    print(render(findings, facts, args.format), end="")
    return exit_code(findings)
