"""Both wire protocols through real httpx against the fake server: shapes, streams, errors."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from pydantic import BaseModel

from dspyq.errors import (
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    MalformedResponseError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
)
from dspyq.lm import LM
from dspyq.lm.providers import PROVIDER_KINDS, OpenAIProvider, ProviderConfig, register_provider
from dspyq.testing import FakeLMServer

KEY = "sk-provider-test-secret-987"


def make_lm(server: FakeLMServer, protocol: str, **kwargs: Any) -> LM:
    options: dict[str, Any] = {"api_key": KEY, "cache": False, "num_retries": 0}
    options.update(kwargs)
    if protocol == "anthropic":
        return LM("anthropic/claude-3-5-haiku-latest", api_base=server.anthropic_base, **options)
    return LM("openai/gpt-4o-mini", api_base=server.openai_base, **options)


PROTOCOLS = ["openai", "anthropic"]

# --- Anthropic specifics -----------------------------------------------------------------------


def test_anthropic_splits_system_and_sends_required_headers(fake_lm: FakeLMServer) -> None:
    lm = make_lm(fake_lm, "anthropic")
    out = lm(
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello"},
        ]
    )
    assert out == ["fake answer: Hello"]
    logged = fake_lm.requests[-1]
    assert logged["path"] == "/v1/messages"
    assert logged["headers"]["x-api-key"] == "REDACTED" and logged["had_key"] is True
    assert logged["headers"]["anthropic-version"] == "2023-06-01"
    body = logged["body"]
    assert body["system"] == "You are terse."
    assert body["messages"] == [{"role": "user", "content": "Hello"}]
    assert body["max_tokens"] == 1024
    assert body["model"] == "claude-3-5-haiku-latest"


def test_anthropic_translates_options_and_drops_openai_only_ones(fake_lm: FakeLMServer) -> None:
    lm = make_lm(fake_lm, "anthropic", temperature=1.4, max_tokens=300)
    lm("Hi", stop="###", presence_penalty=0.5, response_format={"type": "json_object"})
    body = fake_lm.requests[-1]["body"]
    assert body["max_tokens"] == 300
    assert body["temperature"] == 1.0  # clamped to Anthropic's range
    assert body["stop_sequences"] == ["###"]
    assert "presence_penalty" not in body and "response_format" not in body and "stop" not in body


def test_anthropic_n_makes_n_requests_and_sums_usage(fake_lm: FakeLMServer) -> None:
    fake_lm.add_rule(answers=["alpha", "beta", "gamma"])
    lm = make_lm(fake_lm, "anthropic")
    assert lm("pick", n=3) == ["alpha", "beta", "gamma"]
    assert len(fake_lm.requests) == 3
    assert all("n" not in r["body"] for r in fake_lm.requests)
    assert lm.history[-1]["usage"]["prompt_tokens"] == 3 * 1  # "pick" is one token each time
    # the async choices are requested concurrently, so they may arrive in either order
    assert sorted(asyncio.run(lm.acall("pick", n=2))) == ["alpha", "beta"]


def test_anthropic_converts_image_parts(fake_lm: FakeLMServer) -> None:
    lm = make_lm(fake_lm, "anthropic")
    lm(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            }
        ]
    )
    parts = fake_lm.requests[-1]["body"]["messages"][0]["content"]
    assert parts[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert parts[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/a.png"},
    }


# --- OpenAI specifics ----------------------------------------------------------------------------


def test_openai_sends_bearer_key_and_plain_messages(fake_lm: FakeLMServer) -> None:
    lm = make_lm(fake_lm, "openai")
    lm(messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "u"}])
    logged = fake_lm.requests[-1]
    assert logged["headers"]["authorization"] == "REDACTED" and logged["had_key"] is True
    assert logged["body"]["messages"][0] == {"role": "system", "content": "sys"}


def test_openai_reasoning_models_get_max_completion_tokens(fake_lm: FakeLMServer) -> None:
    lm = LM("openai/o3-mini", api_base=fake_lm.openai_base, cache=False, max_tokens=2000)
    lm("think")
    body = fake_lm.requests[-1]["body"]
    assert body["max_completion_tokens"] == 2000 and "max_tokens" not in body


class Capital(BaseModel):
    city: str


def test_fake_answers_json_when_a_schema_is_requested(fake_lm: FakeLMServer) -> None:
    fake_lm.answer_fields({"city": "Paris"})
    out = make_lm(fake_lm, "openai")("capital?", response_format=Capital)
    assert json.loads(out[0]) == {"city": "Paris"}


# --- streaming, both protocols, sync and async ---------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stream_yields_chunks_and_records_full_text_and_usage(
    fake_lm: FakeLMServer, protocol: str
) -> None:
    text = "The quick brown fox jumps over the lazy dog"
    fake_lm.answer(text)
    lm = make_lm(fake_lm, protocol)
    chunks = list(lm.stream("tell me a story"))
    assert len(chunks) > 1
    assert "".join(chunks) == text
    entry = lm.history[-1]
    assert entry["outputs"] == [text]
    assert entry["stream"] is True
    assert entry["usage"]["completion_tokens"] == (len(text) + 3) // 4
    assert entry["usage"]["prompt_tokens"] == (len("tell me a story") + 3) // 4
    assert entry["cost"] > 0
    body = fake_lm.requests[-1]["body"]
    assert body["stream"] is True
    if protocol == "openai":
        assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_astream_yields_chunks_and_records_history(fake_lm: FakeLMServer, protocol: str) -> None:
    fake_lm.answer("one two three four five six")
    lm = make_lm(fake_lm, protocol)

    async def collect() -> list[str]:
        return [chunk async for chunk in lm.astream("count")]

    chunks = asyncio.run(collect())
    assert len(chunks) > 1 and "".join(chunks) == "one two three four five six"
    assert lm.history[-1]["outputs"] == ["one two three four five six"]
    assert lm.history[-1]["usage"]["total_tokens"] > 0


def test_stream_arrives_incrementally(fake_lm: FakeLMServer) -> None:
    import time

    fake_lm.configure(chunk_delay=0.05)
    fake_lm.answer("a b c d e f g h")
    lm = make_lm(fake_lm, "openai")
    start = time.perf_counter()
    stream = lm.stream("go")
    first = next(stream)
    first_at = time.perf_counter() - start
    rest = list(stream)
    total = time.perf_counter() - start
    assert first and rest
    assert total - first_at >= 0.1  # later chunks came after the first one


def test_stream_rejects_n_above_one(fake_lm: FakeLMServer) -> None:
    from dspyq.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        make_lm(fake_lm, "openai").stream("x", n=2)


# --- error mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (429, RateLimitedError),
        (500, ProviderUnavailableError),
        (502, ProviderUnavailableError),
        (503, ProviderUnavailableError),
        (529, ProviderUnavailableError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (400, BadRequestError),
        (404, BadRequestError),
        (422, BadRequestError),
    ],
)
def test_http_status_maps_to_error_type(
    fake_lm: FakeLMServer, protocol: str, status: int, error_type: type[ProviderError]
) -> None:
    fake_lm.fail_next(1, status, retry_after=2 if status == 429 else None)
    lm = make_lm(fake_lm, protocol)
    with pytest.raises(error_type) as info:
        lm("hi")
    error = info.value
    # the exact dspyq type by name (a 5xx or 404 is a variant of it that is DSPy's kind too)
    assert type(error).__name__ == error_type.__name__
    assert error.to_dict()["type"] == error_type.__name__
    assert error.context["status"] == status
    assert error.context["provider"] == protocol
    assert error.context["model"] in ("gpt-4o-mini", "claude-3-5-haiku-latest")
    assert KEY not in str(error) and KEY not in json.dumps(error.to_dict())
    if status == 429:
        assert error.retry_after == 2.0
    assert len(fake_lm.requests) == 1  # num_retries=0: no second attempt


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_context_length_errors_are_recognised(fake_lm: FakeLMServer, protocol: str) -> None:
    fake_lm.fail_next(1, kind="context_length")
    with pytest.raises(ContextWindowExceededError):
        make_lm(fake_lm, protocol)("a very long prompt")
    fake_lm.configure(max_context_tokens=3)
    with pytest.raises(ContextWindowExceededError):
        make_lm(fake_lm, protocol)("this prompt is longer than twelve characters")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_unparseable_bodies_are_malformed_responses(
    fake_lm: FakeLMServer, protocol: str, kind: str
) -> None:
    fake_lm.fail_next(1, kind=kind)  # type: ignore[arg-type]
    with pytest.raises(MalformedResponseError):
        make_lm(fake_lm, protocol)("hi")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_broken_streams_are_malformed_responses(
    fake_lm: FakeLMServer, protocol: str, kind: str
) -> None:
    fake_lm.answer("one two three four five six seven eight")
    fake_lm.fail_next(1, kind=kind)  # type: ignore[arg-type]
    with pytest.raises(MalformedResponseError):
        list(make_lm(fake_lm, protocol).stream("hi"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stream_errors_before_first_chunk_are_mapped(fake_lm: FakeLMServer, protocol: str) -> None:
    fake_lm.fail_next(1, 401)
    with pytest.raises(AuthenticationError):
        list(make_lm(fake_lm, protocol).stream("hi"))


def test_invalid_key_is_an_authentication_error(fake_lm: FakeLMServer) -> None:
    fake_lm.configure(api_key="the-right-key")
    with pytest.raises(AuthenticationError) as info:
        make_lm(fake_lm, "anthropic")("hi")
    assert KEY not in str(info.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_provider_unavailable() -> None:
    lm = LM(
        "openai/gpt-4o-mini",
        api_base=f"http://127.0.0.1:{free_port()}/v1",
        cache=False,
        num_retries=0,
    )
    with pytest.raises(ProviderUnavailableError) as info:
        lm("hi")
    assert info.value.context["provider"] == "openai"
    assert info.value.context["status"] is None


def test_timeout_is_provider_unavailable(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, kind="slow", delay=1.0)
    lm = make_lm(fake_lm, "openai", timeout=0.2)
    with pytest.raises(ProviderUnavailableError, match="in time"):
        lm("hi")


def test_async_errors_are_mapped_too(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, 403)
    with pytest.raises(AuthenticationError):
        asyncio.run(make_lm(fake_lm, "openai").acall("hi"))


def test_error_text_scrubs_an_echoed_key(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, 401, message=f"Incorrect API key provided: {KEY}")
    with pytest.raises(AuthenticationError) as info:
        make_lm(fake_lm, "openai")("hi")
    assert KEY not in str(info.value)
    assert "***" in str(info.value)


# --- registry ------------------------------------------------------------------------------------------


def test_a_new_provider_kind_is_one_class_and_one_registration(
    monkeypatch: pytest.MonkeyPatch, fake_lm: FakeLMServer
) -> None:
    from dspyq.settings import reload_settings

    class ShoutingProvider(OpenAIProvider):
        kind = "shouting"

        def headers(self) -> dict[str, str]:
            return {**super().headers(), "x-shout": "yes"}

    monkeypatch.setitem(PROVIDER_KINDS, "shouting", OpenAIProvider)
    register_provider("shouting", ShoutingProvider)
    monkeypatch.setenv("DSPYQ_PROVIDERS__LOUD__KIND", "shouting")
    monkeypatch.setenv("DSPYQ_PROVIDERS__LOUD__API_BASE", fake_lm.openai_base)
    reload_settings()
    try:
        LM("loud/model", cache=False)("hi")
        assert fake_lm.requests[-1]["headers"]["x-shout"] == "yes"
    finally:
        monkeypatch.undo()
        reload_settings()
    assert "shouting" not in PROVIDER_KINDS


def test_provider_config_repr_hides_the_key() -> None:
    from pydantic import SecretStr

    config = ProviderConfig(
        name="openai", kind="openai", api_base="http://x", api_key=SecretStr(KEY)
    )
    assert KEY not in repr(config)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_error_event_mid_stream_is_raised_and_not_retried(
    fake_lm: FakeLMServer, protocol: str
) -> None:
    fake_lm.answer("one two three four five six")
    fake_lm.fail_next(1, kind="stream_error")
    lm = make_lm(fake_lm, protocol, num_retries=3)
    received: list[str] = []
    with pytest.raises(ProviderUnavailableError) as info:
        for chunk in lm.stream("hi"):
            received.append(chunk)
    assert received == ["one two "]  # text already delivered cannot be taken back
    assert info.value.context["model"] in ("gpt-4o-mini", "claude-3-5-haiku-latest")
    assert len(fake_lm.requests) == 1
    assert lm.history == []
