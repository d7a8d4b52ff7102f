"""Secrets masked wherever dspyq writes something down: events, logs, exception messages,
task arguments as Celery and Flower show them, trace attributes and stored rows.

Masking is structured first: a value under a key that names a secret (``api_key``,
``Authorization``, ``password``, ``client_secret``, ``access_token``, ...) is replaced by
:data:`MASK` whatever it looks like, at any depth of dicts and lists. Text is masked by
what it says: a password in a URL (``redis://:pw@host``), a key/value pair whose key
names a secret (``api_key=...``, ``"password": "..."``, a prompt's
``[[ ## api_key ## ]]`` field), a bearer credential, and values shaped like well-known
secrets (``sk-...`` provider keys, AWS, GitHub and Slack tokens, JWTs, private keys).
:func:`secret_kinds` names the shapes a text holds, never their values.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MASK",
    "install_log_masking",
    "is_secret_key",
    "mask",
    "mask_exception",
    "mask_text",
    "secret_kinds",
]

MASK = "***"
"""What a masked secret becomes."""

# Normalised key names (lower case, no separators) that name a secret, and the endings
# that do (``openai_api_key``, ``db_password``); "token" only as a whole last word, so
# ``max_tokens`` and ``prompt_tokens`` stay readable.
_SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "xapikey",
        "token",
        "credentials",
        "credential",
        "sessionid",
        "pwd",
    }
)
_SECRET_ENDINGS = (
    "apikey",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "secretkey",
    "privatekey",
    "accesskey",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "idtoken",
    "bearertoken",
    "sessiontoken",
    "apitoken",
)
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def is_secret_key(name: object) -> bool:
    """Whether a key (of a dict, header, setting or input field) names a secret."""
    if not isinstance(name, str) or not name:
        return False
    return _names_secret(name)


# Every event's data is masked as it is built, and its keys are a small fixed set.
@functools.lru_cache(maxsize=4096)
def _names_secret(name: str) -> bool:
    words = [w for w in _WORD_SPLIT.split(name.lower()) if w]
    if not words:
        return False
    joined = "".join(words)
    return joined in _SECRET_NAMES or joined.endswith(_SECRET_ENDINGS) or words[-1] == "token"


# --- text -----------------------------------------------------------------------------

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_BEARER = re.compile(r"\b(?P<scheme>Bearer|Basic|Token)\s+(?P<cred>[A-Za-z0-9._~+/=-]{8,})")
# The value is a lookahead: a pair whose key names no secret consumes only its key, so
# "ValueError: password=..." still finds the password.
_PAIR = re.compile(
    r"(?P<kq>[\"']?)(?P<key>[A-Za-z_][\w.-]{1,60})(?P=kq)(?P<sep>\s*[:=]\s*)"
    r"(?=\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<bare>[^\s,;&}\]\"')]+))"
)
_PROMPT_FIELD = re.compile(
    r"(?P<head>\[\[ ## (?P<key>\w+) ## \]\]\n)(?P<value>.*?)(?=\n\n|\n\[\[ ## |\Z)", re.DOTALL
)
SHAPES: dict[str, re.Pattern[str]] = {
    "api_key": re.compile(
        r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}"
        r"|gh[pousr]_[A-Za-z0-9]{30,}|xox[abposr]-[A-Za-z0-9-]{10,})"
    ),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "private_key": re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL
    ),
}
"""Values shaped like well-known secrets, by kind."""

# What every match of _URL_PASSWORD, _BEARER and SHAPES holds: one scan of a text that
# has none of these spares the six substitutions (most event values are short and plain).
_SHAPE_HINT = re.compile(r"://|Bearer|Basic|Token|sk-|AKIA|AIza|gh[pousr]_|xox|eyJ|-----BEGIN ")


def _mask_pairs(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _PAIR.finditer(text):
        if match.start() < pos or not is_secret_key(match.group("key")):
            continue
        group = next(g for g in ("dq", "sq", "bare") if match.group(g) is not None)
        start, end = match.span(group)
        if start == end or match.group(group) == MASK:
            continue
        out += [text[pos:start], MASK]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _mask_prompt_field(match: re.Match[str]) -> str:
    if not is_secret_key(match.group("key")) or not match.group("value").strip():
        return match.group(0)
    return match.group("head") + MASK


_DATA_URI = re.compile(r"data:([\w.+/-]+)((?:;[\w=.+-]+)*);base64,([A-Za-z0-9+/=]{64,})")


def summarise_data_uris(text: str) -> str:
    """``text`` with each long base64 data URI (an image, audio, a file) shown by type and size."""
    return _DATA_URI.sub(
        lambda m: f"data:{m.group(1)}{m.group(2)};base64,<{len(m.group(3))} chars>", text
    )


def mask_text(text: str) -> str:
    """``text`` with every secret it shows masked (see the module's docstring).

    Media data URIs are summarised too: records and logs keep their type and size, not
    megabytes of base64.
    """
    if not text:
        return text
    if ";base64," in text:
        text = summarise_data_uris(text)
    if _SHAPE_HINT.search(text):
        text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
        text = _BEARER.sub(lambda m: f"{m.group('scheme')} {MASK}", text)
        for pattern in SHAPES.values():
            text = pattern.sub(MASK, text)
    if "[[ ## " in text:
        text = _PROMPT_FIELD.sub(_mask_prompt_field, text)
    if ":" in text or "=" in text:
        text = _mask_pairs(text)
    return text


def secret_kinds(text: str) -> Counter[str]:
    """How many secret-shaped values of each kind ``text`` holds (never the values)."""
    found: Counter[str] = Counter()
    if not text:
        return found
    for kind, pattern in SHAPES.items():
        found[kind] += len(pattern.findall(text))
    found["url_password"] += len(_URL_PASSWORD.findall(text))
    found["bearer_token"] += len(_BEARER.findall(text))
    return +found


# --- structures -----------------------------------------------------------------------


_PLAIN = frozenset({int, float, bool})


def mask(value: Any) -> Any:
    """A copy of ``value`` (JSON-like: dicts, lists, strings, numbers) with its secrets
    masked: values under secret keys at any depth, and secrets in every string."""
    if isinstance(value, str):
        return mask_text(value)
    if value is None or type(value) in _PLAIN:  # the common case, before the ABC checks
        return value
    if isinstance(value, Mapping):
        return {k: _masked_entry(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        masked = [mask(v) for v in value]
        return masked if isinstance(value, list) else tuple(masked)
    if type(value).__name__ == "SecretStr":
        return MASK
    return value


def _masked_entry(key: object, value: Any) -> Any:
    # Inlined checks: every event's data passes here, key by key.
    secret = _names_secret(key) if type(key) is str and key else is_secret_key(key)
    if secret and value not in (None, ""):
        return MASK
    return value if value is None or type(value) in _PLAIN else mask(value)


def mask_exception(error: BaseException) -> BaseException:
    """Mask, in place, the text arguments of ``error`` and of the exceptions it was raised
    from or during: their messages and tracebacks then show no secret. Returns ``error``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # An exception type whose args cannot be set keeps its own.
        with contextlib.suppress(Exception):
            current.args = tuple(
                mask(a) if isinstance(a, str | dict | list) else a for a in current.args
            )
        current = current.__cause__ or current.__context__
    return error


# --- logs -----------------------------------------------------------------------------

_LOG_MARK = "dspyq_masking"


def install_log_masking() -> None:
    """Mask secrets in every log record this process creates (its message, its
    exception's traceback and its stack), whoever logs it and whatever handler writes
    it: a record factory, installed once."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, _LOG_MARK, False):
        return

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _mask_record(record)
        return record

    setattr(masked_record, _LOG_MARK, True)
    logging.setLogRecordFactory(masked_record)


def _mask_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format: the handler reports it as logging always does
        return
    masked = mask_text(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = mask_text(_FORMATTER.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info)


_FORMATTER = logging.Formatter()
