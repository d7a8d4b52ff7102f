"""Secrets masked by key in structures and by what they say in text."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dspyq import masking
from dspyq.errors import DspyqError
from dspyq.events import Event
from dspyq.masking import MASK, is_secret_key, mask, mask_exception, mask_text, secret_kinds


@pytest.mark.parametrize(
    "name",
    ["api_key", "OPENAI_API_KEY", "x-api-key", "Authorization", "password", "db_password",
     "client_secret", "access_token", "token", "Cookie", "private_key"],
)  # fmt: skip
def test_keys_that_name_secrets(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name", ["max_tokens", "prompt_tokens", "tokens_per_minute", "key", "cache_key", "question"]
)
def test_keys_that_do_not(name: str) -> None:
    assert not is_secret_key(name)


def test_values_under_secret_keys_are_masked_at_any_depth() -> None:
    value = {
        "headers": {"Authorization": "whatever it looks like"},
        "items": [{"password": "hunter2"}],
        "max_tokens": 256,
        "empty_token": None,
    }
    assert mask(value) == {
        "headers": {"Authorization": MASK},
        "items": [{"password": MASK}],
        "max_tokens": 256,
        "empty_token": None,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:s3cr3t@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("api_key=hunter2 max_tokens=256", "api_key=*** max_tokens=256"),
        ("{'password': 'hunter2', 'n': 1}", "{'password': '***', 'n': 1}"),
        ("use sk-abcdefghijklmnop1234 now", "use *** now"),
        ("Bearer abcdefgh12345678", "Bearer ***"),
        ("[[ ## api_key ## ]]\nhunter2\n\n[[ ## q ## ]]\nwhy?", "[[ ## api_key ## ]]\n***\n\n[[ ## q ## ]]\nwhy?"),
        ("https://example.com/a?b=c at 12:30", "https://example.com/a?b=c at 12:30"),
    ],
)  # fmt: skip
def test_secrets_in_text_are_masked_and_the_rest_kept(text: str, expected: str) -> None:
    assert mask_text(text) == expected


def test_secret_kinds_count_shapes_never_values() -> None:
    kinds = secret_kinds("sk-abcdefghijklmnop1234 and https://u:p@x.com and plain text")
    assert dict(kinds) == {"api_key": 1, "url_password": 1}


def test_errors_events_and_chained_exceptions_are_masked() -> None:
    error = DspyqError("cannot reach redis://:pw123@h:6379", context={"api_key": "sk-x"})
    assert "pw123" not in str(error) and error.context == {"api_key": MASK}
    event = Event(event_type="x", data={"inputs": {"password": "hunter2"}})
    assert event.data == {"inputs": {"password": MASK}}
    try:
        try:
            raise ValueError("token=abc123secret")
        except ValueError as cause:
            raise RuntimeError("wrapped") from cause
    except RuntimeError as exc:
        mask_exception(exc)
        assert str(exc.__cause__) == "token=***"


def test_log_records_are_masked_with_their_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("dspyq.test.masking")
    try:
        raise ValueError("password=hunter2")
    except ValueError:
        log.exception("connecting to %s", "redis://:pw123@h")
    assert "pw123" not in caplog.text and "hunter2" not in caplog.text
    assert "redis://:***@h" in caplog.text


_FRAGMENTS = st.sampled_from(
    ["://", "redis://", ":pw@", "@host", "Bearer ", "Basic ", "Token ", "sk-", "sk-ant-",
     "AKIA", "AIza", "ghp_", "xoxb-", "eyJ", ".eyJ", "-----BEGIN ", "RSA PRIVATE KEY-----",
     "abcdefghijklmnop0123456789", "ABCDEFGHIJKLMNOP", "_-", " ", "\n", "=", ":"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_FRAGMENTS, st.text(max_size=12)), max_size=12).map("".join))
def test_the_shape_hint_misses_no_secret_shape(text: str) -> None:
    # The quick scan may skip the shape substitutions only where none of them matches.
    patterns = [masking._URL_PASSWORD, masking._BEARER, *masking.SHAPES.values()]
    if masking._SHAPE_HINT.search(text) is None:
        assert not any(p.search(text) for p in patterns)
