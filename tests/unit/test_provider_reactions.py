"""How dspyq reacts to what real providers say: spent quotas, retry hints, rate-limit
headers and answers cut at ``max_tokens`` (the last compared with DSPy 3.4.1 itself)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from dspyq.core.context import context
from dspyq.core.predict import Predict
from dspyq.errors import ProviderUnavailableError, QuotaExceededError
from dspyq.lm import LM
from dspyq.lm.providers.limits import (
    RateLimitInfo,
    forget_budgets,
    parse_duration,
    read_rate_limits,
)
from dspyq.resilience.retry import RetryPolicy
from dspyq.testing import FakeLMServer

PROTOCOLS = ["openai", "anthropic"]
LONG = "word " * 100


def make_lm(server: FakeLMServer, protocol: str, **options: Any) -> LM:
    settings: dict[str, Any] = {"api_key": "sk-reactions", "cache": False, **options}
    if protocol == "anthropic":
        return LM("anthropic/claude-fake", api_base=server.anthropic_base, **settings)
    return LM("openai/fake-model", api_base=server.openai_base, **settings)


def waits_of(server: FakeLMServer, protocol: str, **options: Any) -> tuple[LM, list[float]]:
    """An LM whose retry waits are recorded."""
    waits: list[float] = []
    policy = RetryPolicy(on_retry=lambda error, attempt, wait: waits.append(wait))
    return make_lm(server, protocol, retry_policy=policy, **options), waits


# --- spent quota: never retried ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_insufficient_quota_fails_at_once_without_a_retry(
    fake_lm: FakeLMServer, protocol: str
) -> None:
    fake_lm.fail_next(3, kind="insufficient_quota")
    lm = make_lm(fake_lm, protocol, num_retries=3)
    with pytest.raises(QuotaExceededError) as caught:
        lm("hi")
    assert caught.value.retry_strategy == "none"
    assert caught.value.context["attempts"] == 1
    assert len(fake_lm.requests) == 1


def test_a_quota_429_with_retry_after_is_still_not_retried(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(3, 429, code="insufficient_quota", retry_after=0.1)
    with pytest.raises(QuotaExceededError) as caught:
        make_lm(fake_lm, "openai", num_retries=3)("hi")
    assert caught.value.to_dict()["retry_strategy"] == "none"
    assert len(fake_lm.requests) == 1


def test_a_rate_limit_429_is_retried(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, 429, retry_after=0.05)
    lm, waits = waits_of(fake_lm, "openai", num_retries=2)
    assert lm("hi")
    assert waits == [0.05] and len(fake_lm.requests) == 2


# --- retry hints ---------------------------------------------------------------------------------


def test_retry_after_ms_beats_retry_after(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, 429, retry_after=5, retry_after_ms=300)
    lm, waits = waits_of(fake_lm, "openai", num_retries=1)
    started = time.perf_counter()
    assert lm("hi")
    assert waits == [0.3]
    assert 0.3 <= time.perf_counter() - started < 2.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_retry_waits_for_a_spent_budget_to_reset(fake_lm: FakeLMServer, protocol: str) -> None:
    spent = (
        {"anthropic-ratelimit-requests-remaining": "0"}
        if protocol == "anthropic"
        else {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "400ms"}
    )
    if protocol == "anthropic":
        reset = time.time() + 1.4
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(reset)) + "Z"
        spent["anthropic-ratelimit-requests-reset"] = stamp
    fake_lm.fail_next(1, 503, headers=spent)
    lm, waits = waits_of(fake_lm, protocol, num_retries=1)
    assert lm("hi")
    assert waits[0] >= 0.4 - 0.01
    assert [r["status"] for r in fake_lm.requests] == [503, 200]


# --- rate-limit headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rate_limit_headers_land_in_the_response_and_history(
    fake_lm: FakeLMServer, protocol: str
) -> None:
    fake_lm.configure(ratelimit_requests=50, ratelimit_tokens=10_000)
    lm = make_lm(fake_lm, protocol)
    response = lm.forward("hi")
    limits = response.rate_limit
    assert limits is not None and str(limits["request_id"]).startswith("req_")
    assert limits["limit_requests"] == 50 and limits["remaining_requests"] == 49
    assert 0 < float(limits["reset_requests"]) <= 61  # Anthropic stamps whole seconds
    assert lm.history[-1]["rate_limit"] == limits
    assert "rate_limit" not in response.model_dump()  # never cached


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_spent_budget_is_waited_out_instead_of_earning_a_429(
    fake_lm: FakeLMServer, protocol: str
) -> None:
    fake_lm.configure(ratelimit_requests=1, ratelimit_window=1.0)
    lm = make_lm(fake_lm, protocol, num_retries=0)
    lm("first")
    started = time.perf_counter()
    assert lm("second")
    assert time.perf_counter() - started >= 0.5
    assert [r["status"] for r in fake_lm.requests] == [200, 200]


def test_a_full_window_answers_429_with_the_reset_as_retry_hint(fake_lm: FakeLMServer) -> None:
    fake_lm.configure(ratelimit_requests=1, ratelimit_window=0.5)
    lm, waits = waits_of(fake_lm, "openai", num_retries=2)
    lm("first")
    forget_budgets()  # as another process would: it has not seen the spent budget
    assert lm("second")
    assert len(waits) == 1 and 0 < waits[0] <= 0.5
    assert [r["status"] for r in fake_lm.requests] == [200, 429, 200]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20ms", 0.02), ("1s", 1.0), ("1.5s", 1.5), ("6m0s", 360.0), ("1h2m3s", 3723.0), ("7", 7.0)],
)
def test_openai_reset_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_unreadable_headers_are_left_out() -> None:
    info = read_rate_limits(
        {"x-ratelimit-remaining-requests": "many", "x-ratelimit-reset-requests": "soon"}
    )
    assert info == RateLimitInfo() and info.empty and info.wait() == 0.0


# --- answers cut at max_tokens, as DSPy reacts ------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_truncated_answer_warns_once_and_is_not_retried(
    fake_lm: FakeLMServer, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake_lm.answer_fields({"answer": LONG})
    lm = make_lm(fake_lm, protocol, max_tokens=8, num_retries=3, cache=True)
    with caplog.at_level(logging.WARNING, logger="dspyq.lm"), context(lm=lm):
        first = Predict("question -> answer")(question=f"cut {protocol}")
        again = Predict("question -> answer")(question=f"cut {protocol}")
    truncated = [r for r in caplog.records if "LM response was truncated" in r.getMessage()]
    assert len(truncated) == 1  # the cache hit says nothing, as in DSPy
    assert "max_tokens=8" in truncated[0].getMessage()
    assert first.answer == again.answer == "word word wor"
    assert len(fake_lm.requests) == 1
    reason = "max_tokens" if protocol == "anthropic" else "length"
    assert lm.history[0]["finish_reasons"] == [reason]


def test_truncation_reaction_matches_dspy(
    fake_lm: FakeLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    dspy = pytest.importorskip("dspy")
    fake_lm.answer_fields({"answer": LONG})
    theirs = dspy.LM(
        "openai/fake-model",
        api_base=fake_lm.openai_base,
        api_key="sk-x",
        cache=False,
        max_tokens=8,
        num_retries=3,
    )
    their_logger = logging.getLogger("dspy")  # DSPy's loggers do not propagate
    their_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING), dspy.context(lm=theirs):
            expected = dspy.Predict("question -> answer")(question="compare")
    finally:
        their_logger.removeHandler(caplog.handler)
    their_warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    their_requests = len(fake_lm.requests)
    caplog.clear()
    fake_lm.clear_requests()
    ours = make_lm(fake_lm, "openai", max_tokens=8, num_retries=3)
    with caplog.at_level(logging.WARNING), context(lm=ours):
        got = Predict("question -> answer")(question="compare")
    our_warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert got.answer == expected.answer
    assert len(fake_lm.requests) == their_requests == 1
    assert len(our_warnings) == len(their_warnings) == 1


def test_a_stream_cut_mid_body_is_a_retryable_provider_error(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, kind="reset")
    lm, waits = waits_of(fake_lm, "openai", num_retries=1)
    assert lm("hi")
    assert len(waits) == 1
    fake_lm.fail_next(2, kind="reset")
    with pytest.raises(ProviderUnavailableError):
        make_lm(fake_lm, "anthropic", num_retries=1)("hi")


def test_a_slow_first_byte_times_out_and_is_retried(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, kind="slow_first_byte", delay=1.5)
    lm, waits = waits_of(fake_lm, "anthropic", num_retries=1, timeout=0.3)
    assert lm("hi")
    assert len(waits) == 1 and len(fake_lm.requests) == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_calls_read_headers_and_do_not_retry_a_spent_quota(
    fake_lm: FakeLMServer, protocol: str
) -> None:
    lm = make_lm(fake_lm, protocol, num_retries=2)
    response = asyncio.run(lm.aforward("hi"))
    assert response.rate_limit is not None and response.rate_limit["remaining_requests"] > 0
    fake_lm.fail_next(3, kind="insufficient_quota")
    with pytest.raises(QuotaExceededError):
        asyncio.run(lm.aforward("again"))
    assert len(fake_lm.requests) == 2
