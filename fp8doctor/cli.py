"""Command-line entry point: argparse sub-commands; each command lives in fp8doctor.commands.<name>."""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import traceback

from fp8doctor import __version__
from fp8doctor.redact import redact
from fp8doctor.render.controls import escape_controls
from fp8doctor.system import interrupts, safeio
from fp8doctor.system.errors import UsageError

# Sub-command name -> module in fp8doctor.commands exposing add_parser(subparsers) and run(args) -> int.
COMMANDS = ("env", "repro", "matrix", "report", "watch", "inspect")
PYTHON_HELP = ("diagnose the environment of this Python interpreter (or venv folder) instead of fp8doctor's own; "
               "nothing is installed into it (default: $FP8DOCTOR_PYTHON)")


def one_line(message: str) -> str:
    """An error line as printed: secrets redacted (it may echo a path or an argument), controls escaped."""
    return escape_controls(redact(message))


class HelpFormatter(argparse.HelpFormatter):
    """Each line of a description or epilog wrapped on its own (so the exit-code lines stay lines), and every
    option's default shown unless its help already says it."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        out = []
        for line in text.splitlines():
            lead = line[: len(line) - len(line.lstrip())]
            out.append(textwrap.fill(line.strip(), width, initial_indent=indent + lead,
                                     subsequent_indent=indent + lead + ("        " if lead else "")) if line else "")
        return "\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        if (action.option_strings and "default" not in help_text and default not in (None, False, [], "")
                and default is not argparse.SUPPRESS):
            help_text += " (default: %(default)s)"
        return help_text


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from fp8doctor.commands.exits import epilog

    parser = _Parser(
        prog="fp8doctor",
        description="Diagnose and reproduce FP8 training problems with Accelerate, Transformer Engine and torchao.",
        epilog=epilog(), formatter_class=HelpFormatter,
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
        sub.choices[name].formatter_class = HelpFormatter
        sub.choices[name].epilog = epilog(name)
        # Accepted after the command too; SUPPRESS keeps a value given before the command.
        sub.choices[name].add_argument("--python", metavar="PATH", default=argparse.SUPPRESS, help=PYTHON_HELP)
    return parser


def parser_commands(parser: argparse.ArgumentParser) -> list[str]:
    """The sub-command names this parser knows (commands not built yet are absent)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.error(f"a command is required: one of {', '.join(parser_commands(parser))}")
    interrupts.install()
    if sys.stdout is None:  # started with stdout closed (`>&-`): the output would vanish without a word
        print(f"fp8doctor {args.command}: error: stdout is closed; nothing can be written", file=sys.stderr)
        return 2
    try:
        from fp8doctor.system import target

        target.select(getattr(args, "python", None))
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a full disk surfaces here, not as an ignored error at exit
        if safeio.stdout_cut_by_size_limit():
            raise OSError(errno.EFBIG, "File too large (the file size limit, ulimit -f, cut it)")
        return code
    except UsageError as exc:
        print(f"fp8doctor {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        # An installed package that does not import (a broken install): one line that names it, not a traceback.
        origin = traceback.extract_tb(exc.__traceback__)[-1]
        print(one_line(f"fp8doctor {args.command}: error: broken install: {type(exc).__name__}: {exc} "
                       f"(raised at {origin.filename}:{origin.lineno}); reinstall that package"), file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (fp8doctor.system.interrupts)
        print(f"fp8doctor {args.command}: {interrupts.describe(exc)}", file=sys.stderr)
        return interrupts.exit_status(exc)
    except BrokenPipeError:
        return 0
    except OSError as exc:  # stdout on a full disk, over `ulimit -f`, or a file that vanished under us
        where = f" ({exc.filename})" if exc.filename else " (stdout)"
        print(one_line(f"fp8doctor {args.command}: error: cannot write the output{where}: {exc.strerror or exc}"),
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
