"""Keep secrets out of every output: reports are pasted into public issues."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***REDACTED***"

_SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|_KEY$|^KEY$|AUTH|COOKIE|SESSION)",
    re.IGNORECASE,
)
# scheme://user:password@host  -> scheme://***REDACTED***@host
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<cred>[^\s/@:]+:[^\s/@]*)@")
# Well-known token shapes, caught even where the name says nothing (e.g. inside a config value).
_TOKEN_SHAPES = re.compile(
    r"\b(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_\-]{20,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{30,}|"
    r"github_pat_[A-Za-z0-9_]{30,}|xox[abpr]-[A-Za-z0-9\-]{10,}|wandb_v1_[A-Za-z0-9_]{20,})\b"
)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_text(text: str) -> str:
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    return _TOKEN_SHAPES.sub(REDACTED, text)


def redact_value(name: str, value: Any) -> Any:
    if is_secret_name(name) and value not in (None, ""):
        return REDACTED
    return redact_obj(value)


def redact_obj(obj: Any) -> Any:
    """Redact recursively: secret-looking keys lose their values, every string loses credentials."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, Mapping):
        return {k: redact_value(str(k), v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: redact_value(k, v) for k, v in env.items()}
