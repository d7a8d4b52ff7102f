"""Redaction of personal data from the messages an LM call sends to an external provider.

A provider configured with ``redact = true`` (``DSPYQ_PROVIDERS__OPENAI__REDACT=true``)
never receives what looks like:

- an e-mail address;
- a card number: 13 to 19 digits (spaces or dashes allowed) that pass the Luhn check
  and start like a card network's numbers (2 to 6);
- an account number: an IBAN whose check digits are right (python-stdnum), or digits
  introduced as an account number ("account no. 12345678", "acct #...");
- a phone number that Google's libphonenumber (the ``phonenumbers`` package) judges
  valid: any number in international form (+44 ...), and national numbers of
  :data:`PHONE_REGION`.

Each finding is replaced by a placeholder such as ``[REDACTED_EMAIL]``. Only the counts
per kind leave this module (for the ``pii_redacted`` event); the values found never do.
Ordinary numbers (years, amounts, ids, dates, order numbers) are left alone: the
checksums and libphonenumber's validity rules are what keep them out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from stdnum import iban, luhn

__all__ = [
    "PHONE_REGION",
    "PII_REDACTED",
    "Redaction",
    "redact_messages",
    "redact_text",
]

PII_REDACTED = "pii_redacted"
"""Event emitted when a request had personal data removed (data: provider, model, counts)."""

PHONE_REGION = "US"
"""Region whose national phone numbers (without a +country prefix) are recognised."""

EMAIL, PHONE, CARD, ACCOUNT = "email", "phone", "card", "account"

_EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b"
)
# Candidates only: the checksum decides. Digits in groups separated by single spaces or
# dashes, not glued to other digits or letters.
_CARD_RE = re.compile(r"(?<![\w-])[2-6]\d(?:[ -]?\d){11,17}(?![\w-])")
_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_ACCOUNT_RE = re.compile(
    r"(?P<label>\b(?:account|acct|a/c)\.?(?:\s*(?:number|num|no)\.?|\s*#)?\s*[:#]?\s*)"
    r"(?P<number>\d(?:[ -]?\d){5,19})(?!\d)",
    re.IGNORECASE,
)


def _placeholder(kind: str) -> str:
    return f"[REDACTED_{kind.upper()}]"


@dataclass
class Redaction:
    """What redacting one request found: counts per kind (``email``, ``phone``, ...)."""

    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return {kind: n for kind, n in sorted(self.counts.items()) if n}


def _sub_checked(
    pattern: re.Pattern[str],
    text: str,
    kind: str,
    found: Counter[str],
    check: Callable[[str], bool],
    values: dict[str, str] | None = None,
) -> str:
    def replace(match: re.Match[str]) -> str:
        if not check(match.group(0)):
            return match.group(0)
        found[kind] += 1
        if values is not None:
            values[match.group(0)] = kind
        return _placeholder(kind)

    return pattern.sub(replace, text)


def _is_card(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits)


def _redact_accounts(text: str, found: Counter[str], values: dict[str, str] | None) -> str:
    def replace(match: re.Match[str]) -> str:
        found[ACCOUNT] += 1
        if values is not None:
            values[match.group("number")] = ACCOUNT
        return match.group("label") + _placeholder(ACCOUNT)

    return _ACCOUNT_RE.sub(replace, text)


def _redact_phones(
    text: str, found: Counter[str], region: str, values: dict[str, str] | None
) -> str:
    if not any(ch.isdigit() for ch in text):
        return text
    spans = [
        (match.start, match.end)
        for match in phonenumbers.PhoneNumberMatcher(
            text, region, leniency=phonenumbers.Leniency.VALID
        )
    ]
    for start, end in reversed(spans):
        if values is not None:
            values[text[start:end]] = PHONE
        text = text[:start] + _placeholder(PHONE) + text[end:]
        found[PHONE] += 1
    return text


def redact_text(
    text: str,
    found: Counter[str] | None = None,
    region: str = PHONE_REGION,
    values: dict[str, str] | None = None,
) -> str:
    """``text`` with personal data replaced by placeholders; counts go into ``found``,
    and each value removed (with its kind) into ``values``, which stay in memory."""
    counts = found if found is not None else Counter()
    # E-mails first (they may hold digits), then the checksummed numbers, then the
    # looser kinds, so a card number is never half-eaten as a phone number.
    text = _sub_checked(_EMAIL_RE, text, EMAIL, counts, lambda _: True, values)
    text = _sub_checked(_IBAN_RE, text, ACCOUNT, counts, lambda s: iban.is_valid(s), values)
    text = _sub_checked(_CARD_RE, text, CARD, counts, _is_card, values)
    text = _redact_accounts(text, counts, values)
    return _redact_phones(text, counts, region, values)


def _redact_content(content: Any, found: Counter[str], region: str) -> Any:
    if isinstance(content, str):
        return redact_text(content, found, region)
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part = {**part, "text": redact_text(part["text"], found, region)}
            elif isinstance(part, str):
                part = redact_text(part, found, region)
            parts.append(part)
        return parts
    return content


def redact_messages(
    messages: list[dict[str, Any]], region: str = PHONE_REGION
) -> tuple[list[dict[str, Any]], Redaction]:
    """Copies of ``messages`` whose text content is redacted, and what was found.

    Only ``content`` (a string, or a list of parts with ``text``) is read; roles, names
    and non-text parts (images) are passed on as they are.
    """
    redaction = Redaction()
    cleaned = []
    for message in messages:
        if "content" in message:
            message = {
                **message,
                "content": _redact_content(message["content"], redaction.counts, region),
            }
        cleaned.append(message)
    return cleaned, redaction
