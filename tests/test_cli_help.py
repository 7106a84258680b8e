"""The CLI keeps its promises: usage errors on stderr with exit 2, exit codes in every --help, one name and one
meaning per option across sub-commands, defaults shown, and the README's command and exit-code tables agree with
the parser."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fp8doctor.cli import build_parser, parser_commands
from fp8doctor.commands.exits import EXIT_CODES
from fp8doctor.commands.options import COMMAND_TIMEOUT_HELP, RUN_TIMEOUT_HELP

README = Path(__file__).resolve().parents[1] / "README.md"
PARSER = build_parser()
COMMANDS = parser_commands(PARSER)


def sub(name: str) -> argparse.ArgumentParser:
    action = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_no_arguments_is_a_usage_error_on_stderr() -> None:
    p = subprocess.run([sys.executable, "-m", "fp8doctor"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1
    assert p.stderr.startswith("fp8doctor: error: a command is required: one of env, repro, matrix, report, watch")


def test_exit_codes_in_the_top_level_help_and_every_command() -> None:
    top = PARSER.format_help()
    assert "exit codes" in top
    for name in COMMANDS:
        assert re.search(rf"^  {name} +0 ", top, re.M), name
        text = sub(name).format_help()
        section = text[text.index("exit codes:"):]
        for code, meaning in EXIT_CODES[name]:
            assert re.search(rf"^ +{re.escape(code)}  {re.escape(meaning.split()[0])}", section, re.M), (name, code)


def test_timeout_means_one_run_everywhere_and_the_watched_command_has_its_own_name() -> None:
    for name in COMMANDS:
        opts = options(sub(name))
        if "--timeout" in opts and opts["--timeout"].help != argparse.SUPPRESS:
            assert opts["--timeout"].help == RUN_TIMEOUT_HELP, name
    assert options(sub("watch"))["--command-timeout"].help.startswith(COMMAND_TIMEOUT_HELP)
    assert options(sub("report"))["--command-timeout"].help == COMMAND_TIMEOUT_HELP
    assert options(sub("watch"))["--timeout"].help == argparse.SUPPRESS  # deprecated spelling, hidden


def test_every_option_has_help_and_shows_its_default() -> None:
    for name in COMMANDS:
        text = " ".join(sub(name).format_help().split())
        for action in sub(name)._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            assert action.help, (name, action.option_strings)
            if action.default not in (None, False, [], argparse.SUPPRESS):
                shown = action.help if "default" in action.help else f"{action.help} (default: {action.default})"
                assert " ".join(shown.split()) in text, (name, action.option_strings)


def _readme_table(title: str) -> list[list[str]]:
    text = README.read_text()
    start = text.index(title)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows


def test_readme_command_table_options_exist_in_the_parser() -> None:
    rows = _readme_table("| Command |")
    seen = set()
    for cells in rows:
        for usage in re.findall(r"`fp8doctor (\w+)([^`]*)`", cells[0]):
            name, rest = usage
            seen.add(name)
            for opt in re.findall(r"(--[a-z][a-z-]*)", rest):
                assert opt in options(sub(name)), f"README shows `fp8doctor {name} {opt}`, the parser has no {opt}"
    assert seen == set(COMMANDS)


GLOBAL = {"--help", "--python"}  # every command has them; the README says so once, below the table


def visible(name: str) -> set[str]:
    """The options `fp8doctor NAME --help` shows (long spellings), less the global ones."""
    return {a.option_strings[-1] for a in sub(name)._actions
            if a.option_strings and a.help != argparse.SUPPRESS} - GLOBAL


def test_readme_command_table_shows_every_option_of_every_parser() -> None:
    shown: dict[str, set[str]] = {}
    for cells in _readme_table("| Command |"):
        for name, rest in re.findall(r"`fp8doctor (\w+)([^`]*)`", cells[0]):
            shown.setdefault(name, set()).update(re.findall(r"(--[a-z][a-z-]*)", rest))
    assert set(shown) == set(COMMANDS)
    for name in COMMANDS:
        assert shown[name] == visible(name), (name, shown[name] ^ visible(name))


def shown_default(action: argparse.Action) -> str:
    """The default as --help shows it: the help's own '(default: ...)', else HelpFormatter's."""
    found = re.search(r"\(default: ([^)]*)\)", action.help or "")
    return found.group(1) if found else str(action.default)


def test_readme_defaults_table_is_the_parsers_defaults() -> None:
    rows = _readme_table("| option | `repro` | `matrix` | `report` |")  # the rows below this header
    header = ["repro", "matrix", "report"]
    for cells in rows:
        opt = cells[0].strip("`").split()[0]
        for name, value in zip(header, cells[1:], strict=True):
            assert value == shown_default(options(sub(name))[opt]), (opt, name, value)
    assert {r[0].strip("`").split()[0] for r in rows} == {"--steps", "--workers", "--timeout"}


def test_readme_exit_codes_are_the_parser_epilogs() -> None:
    rows = _readme_table("| Exit code of |")
    readme = {(r[0].strip("`"), r[1].strip("`")): r[2].replace("\\|", "|") for r in rows}
    expected = {(name, code): meaning for name, table in EXIT_CODES.items() for code, meaning in table}
    assert readme == expected


@pytest.mark.parametrize("name", ["matrix", "repro", "report"])
def test_shared_options_mean_the_same(name) -> None:
    for opt, meta in (("--steps", "N"), ("--workers", "N"), ("--timeout", "S")):
        action = options(sub(name))[opt]
        assert action.metavar == meta, (name, opt)


def test_readme_quick_start_installs_the_plot_the_report_draws() -> None:
    import tomllib

    text = README.read_text()
    block = text[text.index("## Quick start"):]
    block = block[block.index("```bash"):block.index("```", block.index("```bash") + 3)]
    assert "fp8doctor report" in block
    extras = re.search(r"pip install -e '\.\[([a-z,]+)\]'", block).group(1).split(",")
    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text())
    assert "plot" in extras and any(d.startswith("matplotlib") for d in
                                    pyproject["project"]["optional-dependencies"]["plot"])
