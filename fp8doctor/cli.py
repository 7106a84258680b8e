"""Command-line entry point: argparse sub-commands; each command lives in fp8doctor.commands.<name>."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from fp8doctor import __version__, interrupts
from fp8doctor.errors import UsageError
from fp8doctor.redact import redact
from fp8doctor.render.controls import escape_controls

# Sub-command name -> module in fp8doctor.commands exposing add_parser(subparsers) and run(args) -> int.
COMMANDS = ("env", "repro", "matrix", "report", "watch")
PYTHON_HELP = ("diagnose the environment of this Python interpreter (or venv folder) instead of fp8doctor's own; "
               "nothing is installed into it (default: $FP8DOCTOR_PYTHON)")


def one_line(message: str) -> str:
    """An error line as printed: secrets redacted (it may echo a path or an argument), controls escaped."""
    return escape_controls(redact(message))


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fp8doctor",
        description="Diagnose and reproduce FP8 training problems with Accelerate, Transformer Engine and torchao.",
    )
    parser.add_argument("--version", action="version", version=f"fp8doctor {__version__}")
    parser.add_argument("--python", metavar="PATH", help=PYTHON_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"fp8doctor.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fp8doctor.commands.{name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
        # Accepted after the command too; SUPPRESS keeps a value given before the command.
        sub.choices[name].add_argument("--python", metavar="PATH", default=argparse.SUPPRESS, help=PYTHON_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    interrupts.install()
    try:
        from fp8doctor import target

        target.select(getattr(args, "python", None))
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"fp8doctor {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        # An installed package that does not import (a broken install): one line that names it, not a traceback.
        origin = traceback.extract_tb(exc.__traceback__)[-1]
        print(one_line(f"fp8doctor {args.command}: error: broken install: {type(exc).__name__}: {exc} "
                       f"(raised at {origin.filename}:{origin.lineno}); reinstall that package"), file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (fp8doctor.interrupts)
        print(f"fp8doctor {args.command}: {interrupts.describe(exc)}", file=sys.stderr)
        return interrupts.exit_status(exc)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
