"""Keep secrets out of every output: reports are pasted into public issues."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***REDACTED***"

# A name is secret when one of its words is a secret word (HF_TOKEN, WANDB_API_KEY, AWS_ACCESS_KEY_ID), or it
# contains an unmistakable one anywhere (DBPASSWORD). Whole words, so tokens_per_s and tokenizer_name stay visible;
# KEY only as the last word or before ID (BAR_KEY, AWS_ACCESS_KEY_ID), so num_key_value_heads stays visible.
_SECRET_WORDS = {"TOKEN", "APIKEY", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL",
                 "CREDENTIALS", "AUTH", "COOKIE", "PAT"}
_SECRET_SUBSTRINGS = ("SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "APIKEY", "PRIVATEKEY",
                      "ACCESSKEY", "AUTHTOKEN")
# Names made only of a secret word that are identifiers in fp8doctor's own records.
_IDENTIFIER_NAMES = {"key"}
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# scheme://user:password@host  -> scheme://***REDACTED***@host
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<cred>[^\s/@:]+:[^\s/@]*)@")
# Well-known token shapes, caught even where the name says nothing (e.g. inside a config value).
_TOKEN_SHAPES = re.compile(
    r"\b(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_\-]{20,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{30,}|"
    r"github_pat_[A-Za-z0-9_]{30,}|xox[abpr]-[A-Za-z0-9\-]{10,}|wandb_v1_[A-Za-z0-9_]{20,})\b"
)

# A command-line option whose name says it carries a secret: `--hub_token X`, `--password=X`, `-api-key 'X'`.
# "token" must not run on into a letter, so --tokenizer_name and --max_new_tokens keep their values.
_SECRET_OPTION = (r"-{1,2}[A-Za-z0-9_.\-]*?(?:token|secret|password|passwd|passphrase|credential|"
                  r"api[_\-]?key|access[_\-]?key|private[_\-]?key)(?![A-Za-z])[A-Za-z0-9_.\-]*")
_SECRET_OPTION_NAME = re.compile(rf"^{_SECRET_OPTION}$", re.IGNORECASE)
_SECRET_OPTION_VALUE = re.compile(
    rf"(?P<opt>(?<![\w-]){_SECRET_OPTION})(?P<sep>=| +)(?P<val>'[^']*'|\"[^\"]*\"|[^\s'\"]+)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    words = [w.upper() for w in _WORD_SPLIT.split(name) if w]
    if set(words) & _SECRET_WORDS or words[-1:] == ["KEY"] or words[-2:] == ["KEY", "ID"]:
        return True
    squashed = re.sub(r"[^A-Za-z0-9]", "", name).upper()
    return any(sub in squashed for sub in _SECRET_SUBSTRINGS)


def _text(text: str) -> str:
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _SECRET_OPTION_VALUE.sub(lambda m: f"{m.group('opt')}{m.group('sep')}{REDACTED}", text)
    return _TOKEN_SHAPES.sub(REDACTED, text)


def _argv(argv: list[str]) -> list[str]:
    """A command line with the value of every secret-named option redacted (`--hub_token X`, `--password=X`)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, value = arg.partition("=")
        if _SECRET_OPTION_NAME.match(name):
            if eq:
                out.append(f"{name}={REDACTED}" if value else arg)
                continue
            hide_next = True
        out.append(_text(arg))
    return out


def _hides_value(name: str) -> bool:
    # A bare `key` names a record or a cell (the matrix store's, a result's), not a secret.
    return name.lower() not in _IDENTIFIER_NAMES and is_secret_name(name)


def redact(obj: Any) -> Any:
    """The redaction policy, applied once where data leaves the process (a rendered output, a written file, a
    child's result): a secret-named key loses its value, every string loses credentials and token shapes, a list
    of strings is read as a command line (`--password X` loses X). Returns a redacted copy."""
    if isinstance(obj, str):
        return _text(obj)
    if isinstance(obj, Mapping):
        return {k: REDACTED if _hides_value(str(k)) and v not in (None, "") else redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(v, str) for v in obj):
            return _argv(list(obj))
        return [redact(v) for v in obj]
    return obj
