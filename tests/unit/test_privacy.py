"""The privacy level a job gets, and the guard's checks, without any service."""

from __future__ import annotations

import pytest

from dspyq.core import observe
from dspyq.errors import InputError, PrivacyViolationError
from dspyq.lm.privacy import PrivacyGuard, requested_level, strictest
from dspyq.settings import Settings


def test_the_strictest_level_that_applies_wins() -> None:
    assert strictest(None, None, None) == "standard"
    assert strictest("standard", "high", None) == "high"
    assert strictest("medium", None, "standard") == "medium"


def test_levels_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSPYQ_PRIVACY__LEVEL", "medium")
    monkeypatch.setenv("DSPYQ_PROVIDERS__OPENAI__PRIVACY_LEVEL", "high")
    settings = Settings()
    assert settings.privacy.level == "medium"
    assert settings.provider("openai").privacy_level == "high"
    monkeypatch.setenv("DSPYQ_PRIVACY__LEVEL", "secret")
    with pytest.raises(ValueError, match="standard"):
        Settings()


def test_medium_redacts_nested_inputs_and_reports_counts_only() -> None:
    guard = PrivacyGuard("medium")
    with observe.capture() as events:
        inputs = guard.redact_inputs(
            {"q": "mail bob@example.com", "ctx": ["call +44 20 7946 0958"]}
        )
    assert inputs == {"q": "mail [REDACTED_EMAIL]", "ctx": ["call [REDACTED_PHONE]"]}
    assert [e.data for e in events] == [{"scope": "inputs", "counts": {"email": 1, "phone": 1}}]
    guard.check_outputs({"answer": "bob@example.com"})  # medium checks no output


def test_high_fails_outputs_giving_back_redacted_values_or_secrets() -> None:
    guard = PrivacyGuard("high")
    guard.redact_inputs({"q": "card 4111 1111 1111 1111"})
    guard.check_outputs({"answer": "nothing to see"})
    with observe.capture() as events, pytest.raises(PrivacyViolationError) as info:
        guard.check_outputs({"answer": "it was 4111 1111 1111 1111, key sk-abcdefghijklmnop1234"})
    assert info.value.context["kinds"] == ["api_key", "card"]
    assert [e.data for e in events] == [{"level": "high", "kinds": ["api_key", "card"]}]
    assert "4111" not in str(info.value)


def test_requested_level_is_the_strictest_asked_for_and_checked() -> None:
    assert requested_level(None, None) is None
    assert requested_level("standard", "high") == "high"
    assert requested_level(None, "medium") == "medium"
    with pytest.raises(InputError, match="unknown privacy level 'hgih'"):
        requested_level("hgih", None)
