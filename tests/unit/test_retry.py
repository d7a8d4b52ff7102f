"""Retry policy: backoff shape, Retry-After, which errors retry; and the LM retrying for real."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from dspyq.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderUnavailableError,
    RateLimitedError,
)
from dspyq.lm import LM
from dspyq.resilience.retry import RetryPolicy, is_retryable, parse_retry_after
from dspyq.testing import FakeLMServer

FAST = RetryPolicy(base_delay=0.01, max_delay=0.02)


# --- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0.25", 0.25),
        (" 7 ", 7.0),
        ("-4", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
    ],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


# --- the policy --------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0, rng=random.Random(42))
    error = ProviderUnavailableError("down")
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (6, 5.0)]:
        delays = [policy.delay(error, attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # the jitter spreads over the whole range


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=10.0, max_retry_after=5.0)
    assert policy.delay(RateLimitedError("slow down", retry_after=0.3), 0) == 0.3
    assert policy.delay(RateLimitedError("slow down", retry_after=3600), 0) == 5.0


def test_which_errors_are_retryable() -> None:
    assert is_retryable(RateLimitedError("429"))
    assert is_retryable(ProviderUnavailableError("503"))
    assert not is_retryable(BadRequestError("400"))
    assert not is_retryable(AuthenticationError("401"))
    assert not is_retryable(ValueError("not ours"))


def test_call_retries_until_success() -> None:
    attempts: list[int] = []
    waits: list[float] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ProviderUnavailableError("down")
        return "ok"

    policy = RetryPolicy(num_retries=3, base_delay=0.001, on_retry=lambda e, a, w: waits.append(w))
    assert policy.call(flaky) == "ok"
    assert len(attempts) == 3 and len(waits) == 2


def test_call_gives_up_after_num_retries_and_counts_attempts() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise ProviderUnavailableError("down")

    with pytest.raises(ProviderUnavailableError) as info:
        RetryPolicy(num_retries=2, base_delay=0.001).call(down)
    assert len(calls) == 3
    assert info.value.context["attempts"] == 3


def test_non_retryable_errors_fail_at_once() -> None:
    calls: list[int] = []

    def bad() -> None:
        calls.append(1)
        raise BadRequestError("bad")

    with pytest.raises(BadRequestError):
        RetryPolicy(num_retries=5, base_delay=0.001).call(bad)
    assert len(calls) == 1


def test_async_call_retries() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RateLimitedError("429", retry_after=0.05)
        return "ok"

    start = time.perf_counter()
    assert asyncio.run(RetryPolicy().acall(flaky)) == "ok"
    assert time.perf_counter() - start >= 0.05


def test_iterate_retries_only_before_the_first_item() -> None:
    opened: list[int] = []

    def stream_fails_midway() -> object:
        opened.append(1)
        yield "a"
        raise ProviderUnavailableError("cut")

    with pytest.raises(ProviderUnavailableError):
        list(RetryPolicy(num_retries=3, base_delay=0.001).iterate(stream_fails_midway))  # type: ignore[arg-type]
    assert len(opened) == 1

    opened.clear()

    def stream_fails_first() -> object:
        opened.append(1)
        if len(opened) == 1:
            raise ProviderUnavailableError("not yet")
        yield "b"

    assert list(RetryPolicy(num_retries=3, base_delay=0.001).iterate(stream_fails_first)) == ["b"]  # type: ignore[arg-type]
    assert len(opened) == 2


# --- the LM retrying against the fake server ------------------------------------------------------


def lm_for(server: FakeLMServer, num_retries: int = 3) -> LM:
    return LM(
        "openai/gpt-4o-mini",
        api_base=server.openai_base,
        api_key="sk-x",
        cache=False,
        num_retries=num_retries,
        retry_policy=FAST,
    )


def test_lm_waits_for_retry_after_on_429_then_succeeds(fake_lm: FakeLMServer) -> None:
    fake_lm.rate_limit_next(1, retry_after=0.4)
    start = time.perf_counter()
    assert lm_for(fake_lm)("hi") == ["fake answer: hi"]
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.4
    assert [r["status"] for r in fake_lm.requests] == [429, 200]


def test_lm_async_waits_for_retry_after(fake_lm: FakeLMServer) -> None:
    fake_lm.rate_limit_next(2, retry_after=0.2)
    start = time.perf_counter()
    assert asyncio.run(lm_for(fake_lm).acall("hi")) == ["fake answer: hi"]
    assert time.perf_counter() - start >= 0.4
    assert [r["status"] for r in fake_lm.requests] == [429, 429, 200]


def test_lm_retries_5xx_then_succeeds(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(2, 503)
    lm = lm_for(fake_lm)
    assert lm("hi") == ["fake answer: hi"]
    assert [r["status"] for r in fake_lm.requests] == [503, 503, 200]
    assert len(lm.history) == 1


def test_lm_gives_up_after_its_retries(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(10, 500)
    with pytest.raises(ProviderUnavailableError) as info:
        lm_for(fake_lm, num_retries=2)("hi")
    assert len(fake_lm.requests) == 3
    assert info.value.context["attempts"] == 3


def test_lm_does_not_retry_bad_requests(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, 400)
    with pytest.raises(BadRequestError):
        lm_for(fake_lm)("hi")
    assert len(fake_lm.requests) == 1


def test_num_retries_per_call_overrides_the_lm(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(5, 502)
    with pytest.raises(ProviderUnavailableError):
        lm_for(fake_lm, num_retries=3)("hi", num_retries=0)
    assert len(fake_lm.requests) == 1


def test_lm_retries_a_timeout(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, kind="slow", delay=0.5)
    lm = LM(
        "openai/gpt-4o-mini",
        api_base=fake_lm.openai_base,
        cache=False,
        timeout=0.15,
        retry_policy=FAST,
    )
    assert lm("hi") == ["fake answer: hi"]
    assert len(fake_lm.requests) == 2


def test_stream_retries_a_429_before_any_text(fake_lm: FakeLMServer) -> None:
    fake_lm.rate_limit_next(1, retry_after=0.1)
    fake_lm.answer("streamed after waiting")
    assert "".join(lm_for(fake_lm).stream("hi")) == "streamed after waiting"
    assert [r["status"] for r in fake_lm.requests] == [429, 200]


def test_lm_survives_a_flaky_server(fake_lm: FakeLMServer) -> None:
    fake_lm.configure(error_rate=0.3, seed=7)
    lm = lm_for(fake_lm, num_retries=8)
    outputs = [lm(f"question {i}")[0] for i in range(10)]
    assert outputs == [f"fake answer: question {i}" for i in range(10)]
    statuses = [r["status"] for r in fake_lm.requests]
    assert statuses.count(200) == 10 and statuses.count(500) > 0
