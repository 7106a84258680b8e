"""Keep secrets out of every output: reports are pasted into public issues."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***REDACTED***"

# A name is secret when one of its words is a secret word (HF_TOKEN, WANDB_API_KEY, AWS_ACCESS_KEY_ID), or it
# contains an unmistakable one anywhere (DBPASSWORD). Whole words, so tokens_per_s and tokenizer_name stay visible;
# KEY only as the last word or before ID (BAR_KEY, AWS_ACCESS_KEY_ID), so num_key_value_heads stays visible.
_SECRET_WORDS = {"TOKEN", "APIKEY", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL",
                 "CREDENTIALS", "AUTH", "COOKIE", "PAT", "SIG", "SIGNATURE", "AUTHORIZATION"}
_SECRET_SUBSTRINGS = ("SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "APIKEY", "PRIVATEKEY",
                      "ACCESSKEY", "AUTHTOKEN", "SIGNATURE")
# Names made only of a secret word that are identifiers in fp8doctor's own records.
_IDENTIFIER_NAMES = {"key"}
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# Well-known token shapes, caught even where the name says nothing (a config value, a path segment, a URL). A
# shape starts only where a run of letters and digits starts (so `task-...` is no `sk-` key) and may run on into
# `_` or `/` (`/data/hf_..._copy`). Each alternative starts with a literal, and the lookbehind lets only the first
# character of a run start the long ones: linear in the text, never backtracking over a long value.
_TOKEN_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])(?:hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_\-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|"
    r"github_pat_[A-Za-z0-9_]{30,}|glpat-[A-Za-z0-9_\-]{20,}|xox[abpr]-[A-Za-z0-9\-]{10,}|"
    r"wandb_v1_[A-Za-z0-9_]{20,}|AIza[0-9A-Za-z_\-]{35})"
    # A JWT. No possessive quantifiers (Python 3.11+): each run ends at a `.` its class excludes, so a failed
    # match backtracks over at most the three runs after one start, and starts are only where a run starts.
    r"|(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"
)
# Words that make a command-line option secret (`--hub_token X`, `--auth X`, `-api-key 'X'`), found in its lowercased
# name where no letter follows them: --tokenizer_name, --max_new_tokens and --author keep their values.
_OPTION_WORDS = ("token", "secret", "secrets", "password", "passwd", "passphrase", "credential", "credentials",
                 "api_key", "api-key", "apikey", "access_key", "access-key", "accesskey", "private_key",
                 "private-key", "privatekey", "auth", "authorization", "cookie")
_OPTION_CHARS = re.compile(r"[a-z0-9_.\-]+")
MAX_NAME = 128  # longer is no option or variable name: not judged, so no name check costs more than this
# `NAME=value` where a name starts (an `env NAME=value` prefix, a `?token=...` URL parameter, a YAML dump line).
_ASSIGNMENT = re.compile(rf"(?<![A-Za-z0-9_.\-])([A-Za-z_][A-Za-z0-9_.\-]{{0,{MAX_NAME - 1}}})=")
_VALUE_END = re.compile(r"[\s&;,]")
_WHITESPACE = re.compile(r"\s")
_TOKEN_START = re.compile(r"\S")
# Where an option or a Bearer header may start: the start of a whitespace-separated token.
_OPTION_START = re.compile(r"(?<!\S)(?:-|[Bb]earer(?!\S))")
_URL_END = re.compile(r"[\s'\"<>`]")
_QUERY = re.compile(r"[?#]")


@functools.lru_cache(maxsize=8192)  # the same few names (variables, record fields) come again and again
def is_secret_name(name: str) -> bool:
    words = [w.upper() for w in _WORD_SPLIT.split(name) if w]
    if set(words) & _SECRET_WORDS or words[-1:] == ["KEY"] or words[-2:] == ["KEY", "ID"]:
        return True
    squashed = re.sub(r"[^A-Za-z0-9]", "", name).upper()
    return any(sub in squashed for sub in _SECRET_SUBSTRINGS)


def _is_secret_option(name: str) -> bool:
    """`--hub_token`, `--password`, `-api-key`, `--auth`: one or two dashes, then a name holding a secret word."""
    body = name.lstrip("-")
    if not 1 <= len(name) - len(body) <= 2 or not body or len(body) > MAX_NAME:
        return False
    if is_secret_name(body):  # the same policy as variables and keys: --wandb_key, --sas-sig, --X-Amz-Signature
        return True
    body = body.lower()
    if not _OPTION_CHARS.fullmatch(body):
        return False
    for word in _OPTION_WORDS:
        at = body.find(word)
        while at != -1:
            if not body[at + len(word):at + len(word) + 1].isalpha():
                return True
            at = body.find(word, at + 1)
    return False


def _value_span(text: str, start: int, ends: re.Pattern[str]) -> int:
    """Where a value starting at `start` ends: its closing quote when quoted, else the first `ends` character."""
    if start < len(text) and text[start] in "'\"":
        close = text.find(text[start], start + 1)
        if close != -1:
            return close + 1
    m = ends.search(text, start)
    return m.start() if m else len(text)


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each (start, end) span, in order and not overlapping, replaced by REDACTED."""
    if not spans:
        return text
    out, pos = [], 0
    for a, b in spans:
        out += [text[pos:a], REDACTED]
        pos = b
    out.append(text[pos:])
    return "".join(out)


def _url_credentials(text: str) -> list[tuple[int, int]]:
    """The user-info of every `scheme://user[:password]@host`: a user alone (`https://TOKEN@host`) and a password
    holding `/` included, also as `scheme:/user@host` (a URL that went through a path normalisation). Found from
    each `:/`; the end of the URL, its query and its last `@` are searched once and reused for every `:/` inside
    the same URL: linear."""
    spans: list[tuple[int, int]] = []
    url_end = query = last_at = last_at_for = -1
    at = text.find(":/")
    while at != -1:
        start = at + (3 if text.startswith("//", at + 1) else 2)
        at = text.find(":/", start)
        if spans and start < spans[-1][1]:  # inside user-info already redacted
            continue
        if start > url_end:
            m = _URL_END.search(text, start)
            url_end = m.start() if m else len(text)
        if query < start:
            m = _QUERY.search(text, start, url_end)
            query = m.start() if m else url_end
        if last_at_for != query:
            last_at, last_at_for = text.rfind("@", start, query), query
        if last_at <= start:
            continue
        slash = text.find("/", start, last_at)
        # `host/path@x` is a path; `user:pa/ss@host` is a password with a slash.
        if slash == -1 or text.find(":", start, slash) != -1:
            spans.append((start, last_at))
    return spans


def _option_values(text: str) -> list[tuple[int, int]]:
    """The values of secret options in running text (`--auth X`, `--password=X`, `--hub_token 'a b'`) and of
    `Bearer X`: one pass over the places where a token starts with `-` or is `Bearer`."""
    spans: list[tuple[int, int]] = []
    for m in _OPTION_START.finditer(text):
        a = m.start()
        if spans and a < spans[-1][1]:
            continue
        end_m = _WHITESPACE.search(text, a)
        end = end_m.start() if end_m else len(text)
        word = text[a:end]
        name, eq, value = word.partition("=")
        if word.lower() == "bearer" or (not eq and _is_secret_option(name)):
            nxt = _TOKEN_START.search(text, end)
            if nxt:  # the next token is the value
                spans.append((nxt.start(), _value_span(text, nxt.start(), _WHITESPACE)))
        elif eq and value and _is_secret_option(name):
            v = a + len(name) + 1
            spans.append((v, _value_span(text, v, _WHITESPACE)))
    return spans


def _assignment_values(text: str) -> list[tuple[int, int]]:
    """The values of `NAME=value` with a secret NAME: `env HF_TOKEN=x cmd`, `?token=x&...`, `password=x`."""
    spans: list[tuple[int, int]] = []
    for m in _ASSIGNMENT.finditer(text):
        v = m.end()
        # A bare `key` is an identifier (`key=k` of a record) except as a URL query parameter (`?key=API_KEY`).
        in_query = m.start() > 0 and text[m.start() - 1] in "?&"
        secret = is_secret_name(m.group(1)) if in_query else _hides_value(m.group(1))
        if (spans and m.start() < spans[-1][1]) or not secret:
            continue
        end = _value_span(text, v, _VALUE_END)
        if end > v:
            spans.append((v, end))
    return spans


# An error message may have lower-cased the block (`Unknown mode: -----begin rsa private key-----...`).
_BEGIN = re.compile(r"-----begin ", re.IGNORECASE)
_END = re.compile(r"-----end ", re.IGNORECASE)
_DASHES = "-----"
MAX_LABEL = 64  # `RSA PRIVATE KEY`, `OPENSSH PRIVATE KEY`, `PGP PRIVATE KEY BLOCK`: a label is short
_PUBLIC_LABELS = ("PUBLIC", "CERTIFICATE")


def _key_blocks(text: str) -> list[tuple[int, int]]:
    """The body of every PEM / OpenSSH / PGP block that is not a public key or a certificate, from after
    `-----BEGIN LABEL-----` to its `-----END`, or to the end of the text when the end was cut off. Each search
    starts where the last one ended, and a label is looked for only within MAX_LABEL characters: linear."""
    spans: list[tuple[int, int]] = []
    m = _BEGIN.search(text)
    while m:
        label_at = m.end()
        close = text.find(_DASHES, label_at, label_at + MAX_LABEL + len(_DASHES))
        if close == -1 or any(word in text[label_at:close].upper() for word in _PUBLIC_LABELS):
            m = _BEGIN.search(text, label_at)
            continue
        body = close + len(_DASHES)
        end_m = _END.search(text, body)
        end = end_m.start() if end_m else len(text)
        spans.append((body, end))
        m = _BEGIN.search(text, end)
    return spans


def _text(text: str) -> str:
    """Credentials out of free text, in time linear in its length: private key blocks, URL user-info, secret
    options' and assignments' values (URL query parameters included), well-known token shapes."""
    if _DASHES in text:
        text = _replace(text, _key_blocks(text))
    text = _replace(text, _url_credentials(text))
    text = _replace(text, _option_values(text))
    text = _replace(text, _assignment_values(text))
    return _TOKEN_SHAPES.sub(REDACTED, text)


MAX_CACHED = 256  # short strings (verdicts, versions, variable values) repeat across thousands of records
_short_text = functools.lru_cache(maxsize=16384)(_text)


def _argv(argv: list[str]) -> list[str]:
    """A command line with the value of every secret-named option redacted (`--hub_token X`, `--password=X`,
    `--auth X`), and every argument redacted as text (`HF_TOKEN=x` of an `env` prefix, a URL's user-info)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, value = arg.partition("=")
        if _is_secret_option(name):
            if eq:
                out.append(f"{name}={REDACTED}" if value else arg)
                continue
            hide_next = True
        elif arg.lower() == "bearer":
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
        return _short_text(obj) if len(obj) <= MAX_CACHED else _text(obj)
    if isinstance(obj, Mapping):
        return {k: REDACTED if _hides_value(str(k)) and v not in (None, "") else redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(v, str) for v in obj):
            return _argv(list(obj))
        return [redact(v) for v in obj]
    return obj


# Config keys whose values a diagnosis needs (precision, FP8, the distributed plugins, compile, the frontend's
# stage): shown as read, redacted as any value. Every other key's value is summarised (its type and size), so a
# config's unrelated text (a prompt, a key block, a signed URL nobody thought of) never reaches an output.
_RELEVANT_WORDS = ("fp8", "precision", "bf16", "fp16", "tf32", "fsdp", "deepspeed", "zero", "distributed",
                   "compile", "dynamo", "backend", "recipe", "amax", "num_processes", "num_machines", "machine_rank",
                   "stage", "finetuning", "quantization", "use_cpu", "enabled", "offload", "path")


def is_relevant_key(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _RELEVANT_WORDS)


def summarise(value: Any) -> Any:
    """A value of an unrelated key as its shape: numbers, booleans and None as they are, else type and size."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return f"<text, {len(value)} characters>"
    if isinstance(value, Mapping):
        return f"<mapping, {len(value)} keys>"
    if isinstance(value, (list, tuple)):
        return f"<list, {len(value)} items>"
    return f"<{type(value).__name__}>"


def summarise_config(data: Any) -> Any:
    """A config's mapping with only the FP8-relevant keys' values kept (nested mappings under them too)."""
    if not isinstance(data, Mapping):
        return summarise(data)
    return {k: v if is_relevant_key(str(k)) else summarise(v) for k, v in data.items()}


def public_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """`env`'s facts as they may leave the process: every config's data summarised by summarise_config, then
    redacted."""
    out = dict(facts)
    out["configs"] = [{**c, "data": summarise_config(c.get("data"))} if isinstance(c, Mapping) else c
                      for c in facts.get("configs") or []]
    acc = facts.get("accelerate_config")
    if isinstance(acc, Mapping) and "data" in acc:
        out["accelerate_config"] = {**acc, "data": summarise_config(acc["data"])}
    return redact(out)
