"""Control characters in values and paths, made visible before they reach text or Markdown output.

A newline in an environment value forges a line of the report (or a row of a Markdown table), an ESC starts an
ANSI sequence that rewrites the terminal, a carriage return overwrites the line, a bidi override reorders what is
read. Every renderer passes the values it embeds through `escape_controls` (or `escape_obj`); JSON output needs
nothing, it escapes them itself. One `str.translate` pass: linear in the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_NAMED = {"\n": "\\n", "\r": "\\r", "\x1b": "\\e", "\b": "\\b", "\f": "\\f", "\v": "\\v", "\x00": "\\0"}
_CONTROLS = ([chr(c) for c in range(0x20) if chr(c) != "\t"] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]
             + ["\u2028", "\u2029"] + [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)])


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


_TABLE = {ord(ch): _escape(ch) for ch in _CONTROLS}
_TABLE_KEEP_NEWLINES = {k: v for k, v in _TABLE.items() if k != ord("\n")}


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """`text` with every C0/C1 control (tab excepted), DEL, line/paragraph separator and bidi control written as
    a visible escape (`\\n`, `\\e`, `\\x9b`, `\\u202e`). `keep_newlines` for multi-line text fp8doctor wrote itself
    (a fix's code block), where the other controls are still escaped."""
    return text.translate(_TABLE_KEEP_NEWLINES if keep_newlines else _TABLE)


def as_written(value: Any) -> str:
    """A value shown so that what matters is visible: quoted (Python's repr, as the findings quote it) when it is
    empty, has leading or trailing whitespace, or holds an invisible or unprintable character; else as it is."""
    text = str(value)
    if text == "" or text != text.strip() or not text.isprintable():
        return repr(text)
    return text


def has_controls(text: str) -> bool:
    return len(text.translate(_TABLE)) != len(text)


def unsafe_strings(obj: Any) -> list[str]:
    """The strings inside `obj` that hold a control character (and their last path component), longest first:
    what `escape_embedded` looks for in text built from `obj`."""
    found: set[str] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_controls(item):
                found.add(item)
                tail = item.rsplit("/", 1)[-1]
                if has_controls(tail):
                    found.add(tail)
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return sorted(found, key=len, reverse=True)


def escape_embedded(text: str, unsafe: list[str]) -> str:
    """Multi-line text fp8doctor wrote (a finding's detail, a fix) with values from `unsafe` embedded: each such
    value is escaped whole, newlines included; the text's own newlines stay; every other control is escaped."""
    for raw in unsafe:
        if raw in text:
            text = text.replace(raw, escape_controls(raw))
    return escape_controls(text, keep_newlines=True)


def escape_obj(obj: Any) -> Any:
    """Every string inside `obj` (mapping keys included) escaped: data about to be laid out as text."""
    if isinstance(obj, str):
        return escape_controls(obj)
    if isinstance(obj, Mapping):
        return {escape_obj(k): escape_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [escape_obj(v) for v in obj]
    return obj
