"""Personal data is removed before a request leaves for a provider configured to redact."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from dspyq.core import observe
from dspyq.lm import LM
from dspyq.lm.redact import redact_messages, redact_text
from dspyq.settings import reload_settings
from dspyq.testing import FakeLMServer


def _redact(text: str) -> tuple[str, dict[str, int]]:
    found: Counter[str] = Counter()
    return redact_text(text, found), dict(found)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to jane.doe+news@example.co.uk today", "email"),
        ("or J_Smith@mail-server.example.org.", "email"),
        ("call +44 20 7946 0958 please", "phone"),
        ("office: (212) 555-0123", "phone"),
        ("mobile 212-555-0199", "phone"),
        ("paid with 4111 1111 1111 1111 yesterday", "card"),
        ("card 5500-0000-0000-0004", "card"),
        ("amex 378282246310005", "card"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "account"),
        ("to DE89370400440532013000 please", "account"),
        ("account no. 12345678", "account"),
        ("Acct #0099887766", "account"),
    ],
)
def test_each_kind_is_replaced_by_its_placeholder(text: str, kind: str) -> None:
    cleaned, counts = _redact(text)
    assert counts == {kind: 1}
    assert f"[REDACTED_{kind.upper()}]" in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "In 2024 we sold 1234567 units for $3,456,789.00.",
        "Shipped on 2026-11-25 at 14:30, order 4000, id 123456789012.",
        "pi is 3.14159265358979 and e is 2.718281828",
        "version 1.2.3 of RFC 9110, ISBN 9780306406157",
        "card-like but not Luhn: 4111 1111 1111 1112",
        "not an IBAN: GB00 WEST 1234 5698 7654 32",
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "the answer is 42, the zip code 10001, 5 + 7 = 12",
        "an @mention and user@localhost are not addresses",
    ],
)
def test_ordinary_text_and_numbers_are_left_alone(text: str) -> None:
    assert _redact(text) == (text, {})


def test_counts_add_up_over_messages_and_content_parts() -> None:
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "I am a@b.io, card 4111111111111111, a@b.io again"},
        {"role": "user", "content": [{"type": "text", "text": "ring +1 212 555 0123"}]},
    ]
    cleaned, redaction = redact_messages(messages)
    assert redaction.as_dict() == {"card": 1, "email": 2, "phone": 1}
    assert cleaned[0] == messages[0]
    assert "a@b.io" not in json.dumps(cleaned)
    assert messages[1]["content"].startswith("I am a@b.io")  # the caller's copy is untouched


@pytest.fixture
def redacting_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DSPYQ_PROVIDERS__OPENAI__REDACT", "true")
    reload_settings()
    yield
    monkeypatch.undo()
    reload_settings()


PII_PROMPT = (
    "Customer jane@example.com (phone +44 20 7946 0958) paid with 4111 1111 1111 1111 "
    "from GB82 WEST 1234 5698 7654 32. What is 2 + 2?"
)


@pytest.mark.usefixtures("redacting_openai")
def test_the_provider_receives_only_redacted_text_and_an_event_counts_it(
    fake_lm: FakeLMServer,
) -> None:
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="k", cache=False)
    with observe.capture() as events:
        lm(PII_PROMPT)

    sent = json.dumps(fake_lm.requests[-1]["body"])
    for secret in ("jane@example.com", "7946", "4111", "GB82"):
        assert secret not in sent
    assert "What is 2 + 2?" in sent
    [event] = [e for e in events if e.event_type == "pii_redacted"]
    assert event.data == {
        "provider": "openai",
        "model": "openai/gpt-4o-mini",
        "counts": {"account": 1, "card": 1, "email": 1, "phone": 1},
    }
    assert "jane@example.com" not in json.dumps([e.model_dump(mode="json") for e in events])


@pytest.mark.usefixtures("redacting_openai")
def test_streamed_requests_are_redacted_too(fake_lm: FakeLMServer) -> None:
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="k", cache=False)
    "".join(lm.stream("mail me at joe@example.org"))
    assert "joe@example.org" not in json.dumps(fake_lm.requests[-1]["body"])


def test_providers_without_redact_send_the_text_unchanged(fake_lm: FakeLMServer) -> None:
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="k", cache=False)
    with observe.capture() as events:
        lm("mail me at joe@example.org")
    assert "joe@example.org" in json.dumps(fake_lm.requests[-1]["body"])
    assert not [e for e in events if e.event_type == "pii_redacted"]
