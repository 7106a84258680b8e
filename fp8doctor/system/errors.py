"""Errors that end a command with a one-line message instead of a traceback."""


class UsageError(Exception):
    """Bad usage or unreadable input: the CLI prints the message on one line and exits 2."""

    exit_code = 2
