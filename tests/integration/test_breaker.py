"""The per-provider circuit breaker against a real Redis, shared by real processes."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pybreaker
import pytest
import redis

from dspyq.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ContextWindowExceededError,
    InputError,
    MalformedResponseError,
    ProviderUnavailableError,
    RateLimitedError,
)
from dspyq.resilience.breaker import CircuitBreaker, RedisBreakerStorage
from dspyq.resilience.redis_client import redis_from_url

pytestmark = pytest.mark.integration


class Provider:
    """A stand-in for an LM provider call that records whether it ran."""

    def __init__(self) -> None:
        self.calls = 0

    def fail(self, error: Exception | None = None) -> None:
        self.calls += 1
        raise error or ProviderUnavailableError("provider answered 503")

    def answer(self) -> str:
        self.calls += 1
        return "ok"


def _fail(breaker: CircuitBreaker, times: int, error: Exception | None = None) -> None:
    provider = Provider()
    for _ in range(times):
        with pytest.raises(type(error) if error else ProviderUnavailableError):
            breaker.call(provider.fail, error)


def _fail_in_this_process(url: str, prefix: str, times: int) -> tuple[int, str]:
    """Child process: fail ``times`` calls; report pid and the state seen afterwards."""
    breaker = CircuitBreaker(redis_from_url(url), "openai", fail_max=5, key_prefix=prefix)
    for _ in range(times):
        with contextlib.suppress(ProviderUnavailableError):
            breaker.call(Provider().fail)
    return os.getpid(), breaker.state


def _call_in_this_process(url: str, prefix: str) -> tuple[int, str, float | None, int]:
    """Child process: try one call; report pid, outcome, retry_after and whether fn ran."""
    breaker = CircuitBreaker(redis_from_url(url), "openai", fail_max=5, key_prefix=prefix)
    provider = Provider()
    try:
        breaker.call(provider.answer)
    except CircuitOpenError as exc:
        return os.getpid(), "CircuitOpenError", exc.retry_after, provider.calls
    return os.getpid(), "passed", None, provider.calls


def _in_new_process(fn: Callable[..., Any], *args: Any) -> Any:
    # Spawned, not forked: a fork of this threaded test process can inherit a held lock.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


def test_breaker_opens_on_failures_summed_across_processes(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    pid_a, state_a = _in_new_process(_fail_in_this_process, redis_url, prefix, 3)
    assert state_a == "closed"  # 3 of 5
    pid_b, state_b = _in_new_process(_fail_in_this_process, redis_url, prefix, 2)
    assert state_b == "open"  # 3 + 2

    pid_c, outcome, retry_after, calls = _in_new_process(_call_in_this_process, redis_url, prefix)
    assert len({pid_a, pid_b, pid_c, os.getpid()}) == 4
    assert (outcome, calls) == ("CircuitOpenError", 0)
    assert retry_after is not None and 0 < retry_after <= 30

    here = CircuitBreaker(client, "openai", key_prefix=prefix)
    assert here.state == "open"
    assert here.status().fail_counter == 5
    assert client.exists(f"{prefix}:breaker:openai")
    assert 0 < client.ttl(f"{prefix}:breaker:openai") <= 86_400


def test_open_breaker_fails_fast_without_calling_the_provider(
    client: redis.Redis, prefix: str
) -> None:
    breaker = CircuitBreaker(client, "anthropic", fail_max=2, reset_timeout=30, key_prefix=prefix)
    _fail(breaker, 2)
    provider = Provider()
    began = time.monotonic()
    for _ in range(20):
        with pytest.raises(CircuitOpenError) as caught:
            breaker.call(provider.answer)
    assert time.monotonic() - began < 1.0
    assert provider.calls == 0
    error = caught.value
    assert error.retry_after is not None and 29 < error.retry_after <= 30
    assert error.retry_strategy == "after"
    assert error.context["provider"] == "anthropic"


def test_probe_success_after_reset_timeout_closes_the_breaker(
    client: redis.Redis, prefix: str
) -> None:
    seen: list[tuple[str, str, str]] = []
    breaker = CircuitBreaker(
        client,
        "local",
        fail_max=2,
        reset_timeout=1,
        key_prefix=prefix,
        listeners=[lambda *change: seen.append(change)],
    )
    _fail(breaker, 2)
    assert breaker.state == "open"
    time.sleep(breaker.status().retry_after + 0.02)
    assert breaker.state == "half-open"

    assert breaker.call(Provider().answer) == "ok"
    assert breaker.state == "closed"
    assert breaker.status().fail_counter == 0
    assert seen == [
        ("local", "closed", "open"),
        ("local", "open", "half-open"),
        ("local", "half-open", "closed"),
    ]


def test_failed_probe_reopens_for_another_reset_timeout(client: redis.Redis, prefix: str) -> None:
    breaker = CircuitBreaker(client, "local", fail_max=1, reset_timeout=1, key_prefix=prefix)
    _fail(breaker, 1)
    time.sleep(breaker.status().retry_after + 0.02)
    _fail(breaker, 1, MalformedResponseError("not JSON"))  # the probe
    status = breaker.status()
    assert status.state == "open"
    assert 0.9 < status.retry_after <= 1.0  # opened_at was stamped again


def test_half_open_lets_exactly_one_probe_through(client: redis.Redis, prefix: str) -> None:
    breaker = CircuitBreaker(client, "local", fail_max=1, reset_timeout=1, key_prefix=prefix)
    _fail(breaker, 1)
    time.sleep(breaker.status().retry_after + 0.02)

    probing, release = threading.Event(), threading.Event()
    results: list[str] = []

    def slow_probe() -> str:
        probing.set()
        release.wait(timeout=5)
        return "probe ok"

    thread = threading.Thread(target=lambda: results.append(breaker.call(slow_probe)))
    thread.start()
    assert probing.wait(timeout=5)
    others = Provider()
    for _ in range(5):  # from this thread and from another breaker object alike
        with pytest.raises(CircuitOpenError):
            breaker.call(others.answer)
        with pytest.raises(CircuitOpenError):
            CircuitBreaker(client, "local", reset_timeout=1, key_prefix=prefix).call(others.answer)
    assert others.calls == 0
    release.set()
    thread.join(timeout=5)
    assert results == ["probe ok"]
    assert breaker.state == "closed"


def test_callers_faults_do_not_count_but_provider_faults_do(
    client: redis.Redis, prefix: str
) -> None:
    breaker = CircuitBreaker(client, "openai", fail_max=3, reset_timeout=30, key_prefix=prefix)
    for error in [
        BadRequestError("400"),
        ContextWindowExceededError("too long"),
        AuthenticationError("401"),
        InputError("missing field"),
    ] * 3:
        _fail(breaker, 1, error)
    assert (breaker.state, breaker.status().fail_counter) == ("closed", 0)

    _fail(breaker, 1, RateLimitedError("429"))
    _fail(breaker, 1, MalformedResponseError("garbage"))
    assert breaker.state == "closed"
    _fail(breaker, 1, TimeoutError("read timed out"))
    assert breaker.state == "open"


def test_call_async_shares_the_same_state(client: redis.Redis, prefix: str) -> None:
    breaker = CircuitBreaker(client, "openai", fail_max=2, reset_timeout=1, key_prefix=prefix)
    awaited: list[str] = []

    async def down() -> str:
        awaited.append("down")
        raise ProviderUnavailableError("503")

    async def up() -> str:
        awaited.append("up")
        return "ok"

    async def scenario() -> str:
        for _ in range(2):
            with pytest.raises(ProviderUnavailableError):
                await breaker.call_async(down)
        with pytest.raises(CircuitOpenError):
            await breaker.call_async(up)
        assert awaited == ["down", "down"]  # the open breaker did not run `up`
        await asyncio.sleep(breaker.status().retry_after + 0.02)
        return await breaker.call_async(up)

    assert asyncio.run(scenario()) == "ok"
    assert breaker.state == "closed"


def test_cancelled_probe_gives_its_turn_back(client: redis.Redis, prefix: str) -> None:
    breaker = CircuitBreaker(client, "openai", fail_max=1, reset_timeout=1, key_prefix=prefix)
    _fail(breaker, 1)

    async def hangs() -> str:
        await asyncio.sleep(30)
        return "never"

    async def up() -> str:
        return "ok"

    async def scenario() -> str:
        await asyncio.sleep(breaker.status().retry_after + 0.02)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(breaker.call_async(hangs), timeout=0.2)
        # A cancellation says nothing about the provider: the next caller may probe.
        return await breaker.call_async(up)

    assert asyncio.run(scenario()) == "ok"
    assert breaker.state == "closed"


def test_reset_closes_and_reports(client: redis.Redis, prefix: str) -> None:
    seen: list[tuple[str, str, str]] = []
    breaker = CircuitBreaker(client, "openai", fail_max=1, key_prefix=prefix)
    _fail(breaker, 1)
    breaker.add_listener(lambda *change: seen.append(change))
    breaker.reset()
    assert breaker.state == "closed"
    assert breaker.call(Provider().answer) == "ok"
    assert seen == [("openai", "open", "closed")]


def test_storage_fits_plain_pybreaker_across_instances(client: redis.Redis, prefix: str) -> None:
    key = f"{prefix}:breaker:plain"
    first = pybreaker.CircuitBreaker(
        fail_max=2, reset_timeout=30, state_storage=RedisBreakerStorage(client, key)
    )
    second = pybreaker.CircuitBreaker(
        fail_max=2, reset_timeout=30, state_storage=RedisBreakerStorage(client, key)
    )
    with pytest.raises(ZeroDivisionError):
        first.call(lambda: 1 / 0)
    assert second.fail_counter == 1
    with pytest.raises(pybreaker.CircuitBreakerError):
        second.call(lambda: 1 / 0)
    assert first.current_state == "open"
    with pytest.raises(pybreaker.CircuitBreakerError):
        first.call(lambda: "not run")
    # Our breaker reads what pybreaker wrote.
    assert CircuitBreaker(client, "plain", key_prefix=prefix).state == "open"


def test_a_success_resets_failures_it_saw_and_writes_nothing_otherwise(
    client: redis.Redis, prefix: str
) -> None:
    breaker = CircuitBreaker(client, "openai", fail_max=3, key_prefix=prefix)
    storage = breaker.storage
    assert isinstance(storage, RedisBreakerStorage)
    _fail(breaker, 2)
    assert storage.snapshot().fail_counter == 2
    assert breaker.call(Provider().answer) == "ok"
    assert storage.snapshot().fail_counter == 0  # consecutive failures start again
    _fail(breaker, 2)
    breaker.call(Provider().answer)
    _fail(breaker, 2)
    assert storage.snapshot().state == "closed"  # never 3 failures without a success

    # A clean success (closed, nothing counted) leaves the breaker's hash alone.
    before = client.hgetall(storage.key)
    client.delete(storage.key)
    breaker.call(Provider().answer)
    assert not client.exists(storage.key)
    assert before  # it existed while failures were counted


def test_a_failure_counted_during_a_clean_call_waits_for_the_next_success(
    client: redis.Redis, prefix: str
) -> None:
    breaker = CircuitBreaker(client, "openai", fail_max=3, key_prefix=prefix)
    other = CircuitBreaker(client, "openai", fail_max=3, key_prefix=prefix)
    storage = breaker.storage
    assert isinstance(storage, RedisBreakerStorage)

    def answer_while_another_process_fails() -> str:
        _fail(other, 1)
        return "ok"

    assert breaker.call(answer_while_another_process_fails) == "ok"
    assert storage.snapshot().fail_counter == 1  # admitted clean: nothing to reset then
    breaker.call(Provider().answer)
    assert storage.snapshot().fail_counter == 0  # the next success saw it and reset it


def test_a_probe_whose_lease_ran_out_no_longer_decides(client: redis.Redis, prefix: str) -> None:
    breaker = CircuitBreaker(
        client, "openai", fail_max=1, reset_timeout=0.1, key_prefix=prefix, probe_timeout=0.2
    )
    _fail(breaker, 1)
    time.sleep(0.15)
    first = breaker.admitted(breaker.storage.admit(breaker.reset_timeout, breaker.probe_timeout))
    time.sleep(0.25)  # the first probe's lease ran out: the next caller holds the breaker
    second = breaker.admitted(breaker.storage.admit(breaker.reset_timeout, breaker.probe_timeout))
    assert first.probe and second.probe and first.token != second.token

    with pytest.raises(ProviderUnavailableError):  # the stale probe's failure is not counted
        breaker.call_admitted(first, Provider().fail)
    assert breaker.state == "half-open"
    assert breaker.call_admitted(second, Provider().answer) == "ok"
    assert breaker.state == "closed"
