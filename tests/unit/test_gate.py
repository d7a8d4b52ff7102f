"""The provider gate seam of the LM: every HTTP attempt passes it, cached answers never do."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from dspyq.core.context import context
from dspyq.errors import ProviderUnavailableError, RateLimitExceededError
from dspyq.lm import LM
from dspyq.lm.gate import (
    DEFAULT_OUTPUT_TOKENS,
    GATE_KEY,
    NoGate,
    ProviderGate,
    estimate_tokens,
    provider_gate,
)
from dspyq.lm.request import LMChunk, LMRequest, LMResponse
from dspyq.resilience.retry import RetryPolicy
from dspyq.testing import FakeLMServer

T = TypeVar("T")


class CountingGate:
    """A real gate for one process: counts attempts per provider, can refuse them."""

    def __init__(self, refuse: BaseException | None = None) -> None:
        self.attempts: list[tuple[str, int]] = []
        self.results: list[Any] = []
        self.refuse = refuse

    def run(self, provider: str, estimated_tokens: int, fn: Callable[[], T]) -> T:
        self.attempts.append((provider, estimated_tokens))
        if self.refuse is not None:
            raise self.refuse
        result = fn()
        self.results.append(result)
        return result

    async def arun(self, provider: str, estimated_tokens: int, fn: Callable[[], Awaitable[T]]) -> T:
        self.attempts.append((provider, estimated_tokens))
        if self.refuse is not None:
            raise self.refuse
        result = await fn()
        self.results.append(result)
        return result


@pytest.fixture
def gate() -> Iterator[CountingGate]:
    installed = CountingGate()
    with context(**{GATE_KEY: installed}):
        yield installed


def _lm(server: FakeLMServer, **kwargs: Any) -> LM:
    options: dict[str, Any] = {
        "api_base": server.openai_base,
        "api_key": "sk-unit",
        "cache": False,
        "retry_policy": RetryPolicy(base_delay=0.001, max_delay=0.002),
    }
    options.update(kwargs)
    return LM("openai/gpt-4o-mini", **options)


# --- the estimate ----------------------------------------------------------------------------


def test_estimate_is_a_quarter_of_the_characters_plus_the_output_allowance() -> None:
    request = LMRequest(
        model="m",
        messages=[{"role": "system", "content": "x" * 40}, {"role": "user", "content": "y" * 39}],
        params={"max_tokens": 100},
    )
    assert estimate_tokens(request) == 20 + 100


def test_estimate_without_max_tokens_assumes_the_default_per_choice() -> None:
    request = LMRequest(model="m", messages=[{"role": "user", "content": "abcd"}], params={"n": 3})
    assert estimate_tokens(request) == 1 + 3 * DEFAULT_OUTPUT_TOKENS


def test_estimate_counts_text_parts_and_a_flat_amount_for_images() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    request = LMRequest(
        model="m",
        messages=[{"role": "user", "content": [{"type": "text", "text": "a" * 8}, image]}],
        params={"max_tokens": 10},
    )
    assert estimate_tokens(request) == 2 + 256 + 10


# --- installing a gate ---------------------------------------------------------------------------


def test_no_gate_is_installed_by_default_and_it_passes_calls_through() -> None:
    default = provider_gate()
    assert isinstance(default, NoGate)
    assert isinstance(default, ProviderGate)
    assert default.run("openai", 10, lambda: 42) == 42

    async def answer() -> int:
        return 7

    assert asyncio.run(default.arun("openai", 10, answer)) == 7


def test_a_gate_is_bound_in_the_runtime_configuration_and_the_inner_binding_wins() -> None:
    first, second = CountingGate(), CountingGate()
    with context(lm_gate=first):
        assert provider_gate() is first
        with context(lm_gate=second):
            assert provider_gate() is second
        assert provider_gate() is first
    assert isinstance(provider_gate(), NoGate)


# --- the LM goes through it ---------------------------------------------------------------------


def test_each_http_attempt_passes_the_gate_including_retries(
    fake_lm: FakeLMServer, gate: CountingGate
) -> None:
    fake_lm.fail_next(1, 503)
    lm = _lm(fake_lm, num_retries=2, max_tokens=50)

    assert lm("hello") == ["fake answer: hello"]

    assert len(fake_lm.requests) == 2
    assert gate.attempts == [("openai", 2 + 50), ("openai", 2 + 50)]
    assert isinstance(gate.results[-1], LMResponse)


def test_a_cached_answer_does_not_pass_the_gate(fake_lm: FakeLMServer, gate: CountingGate) -> None:
    lm = _lm(fake_lm, cache=True)
    lm("cache me")
    lm("cache me")
    assert len(fake_lm.requests) == 1
    assert len(gate.attempts) == 1
    assert lm.history[-1]["cache_hit"] is True


def test_a_refusing_gate_stops_the_call_before_any_http_and_is_not_retried(
    fake_lm: FakeLMServer,
) -> None:
    refusing = CountingGate(refuse=RateLimitExceededError("budget spent", retry_after=30.0))
    with context(lm_gate=refusing), pytest.raises(RateLimitExceededError) as info:
        _lm(fake_lm, num_retries=3)("hello")
    assert info.value.retry_after == 30.0
    assert fake_lm.requests == []
    assert len(refusing.attempts) == 1


def test_provider_errors_raised_inside_the_gate_are_retried_by_the_lm(
    fake_lm: FakeLMServer,
) -> None:
    flaky = CountingGate(refuse=ProviderUnavailableError("down"))
    with context(lm_gate=flaky), pytest.raises(ProviderUnavailableError):
        _lm(fake_lm, num_retries=2)("hello")
    assert len(flaky.attempts) == 3


def test_async_calls_pass_the_gate(fake_lm: FakeLMServer, gate: CountingGate) -> None:
    lm = _lm(fake_lm)
    assert asyncio.run(lm.acall("hi")) == ["fake answer: hi"]
    assert len(gate.attempts) == 1
    assert isinstance(gate.results[0], LMResponse)


def test_a_stream_passes_the_gate_once_when_it_opens(
    fake_lm: FakeLMServer, gate: CountingGate
) -> None:
    lm = _lm(fake_lm)
    text = "".join(lm.stream("stream me"))
    assert text == "fake answer: stream me"
    assert len(gate.attempts) == 1
    assert isinstance(gate.results[0], LMChunk)  # the gate saw the stream's first chunk
    assert lm.history[-1]["outputs"] == ["fake answer: stream me"]


def test_a_stream_that_fails_to_open_is_retried_through_the_gate(
    fake_lm: FakeLMServer, gate: CountingGate
) -> None:
    fake_lm.fail_next(1, 500)
    lm = _lm(fake_lm, num_retries=1)
    assert "".join(lm.stream("again")) == "fake answer: again"
    assert len(gate.attempts) == 2
    assert len(fake_lm.requests) == 2


def test_async_streams_pass_the_gate_when_they_open(
    fake_lm: FakeLMServer, gate: CountingGate
) -> None:
    lm = _lm(fake_lm)

    async def collect() -> str:
        return "".join([piece async for piece in lm.astream("async stream")])

    assert asyncio.run(collect()) == "fake answer: async stream"
    assert len(gate.attempts) == 1
    assert isinstance(gate.results[0], LMChunk)
