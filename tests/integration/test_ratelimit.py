"""The Redis rate limiter against a real Redis, from several real processes."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import threading
import time
from typing import Any

import pytest
import redis

from dspyq.errors import ConfigurationError, RateLimitExceededError, RedisUnavailableError
from dspyq.resilience.ratelimit import RateLimiter
from dspyq.resilience.redis_client import redacted_url, redis_from_url

pytestmark = pytest.mark.integration


def _max_in_any_window(times: list[float], period: float) -> int:
    """The most grants found in any half-open window [t, t + period)."""
    ordered = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(ordered):
        while j < len(ordered) and ordered[j] < start + period:
            j += 1
        best = max(best, j - i)
    return best


def _hammer(url: str, prefix: str, rate: str, seconds: float, start: Any, out: Any) -> None:
    """Child process: call try_acquire in a tight loop; report the Redis times of grants."""
    limiter = RateLimiter(redis_from_url(url), "hammered", rate=rate, key_prefix=prefix)
    start.wait(timeout=30)
    grants: list[float] = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        decision = limiter.attempt()
        if decision.granted:
            grants.append(decision.at)
    out.put(grants)


def test_limit_never_exceeded_by_three_processes(redis_url: str, prefix: str) -> None:
    rate, limit, seconds = "20/s", 20, 3.0
    # Spawned, not forked: a fork of this threaded test process can inherit a held lock.
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(3), ctx.Queue()
    children = [
        ctx.Process(target=_hammer, args=(redis_url, prefix, rate, seconds, start, out))
        for _ in range(3)
    ]
    for child in children:
        child.start()
    per_process = [out.get(timeout=30) for _ in children]
    for child in children:
        child.join(timeout=10)
        assert child.exitcode == 0

    grants = [t for times in per_process for t in times]
    assert _max_in_any_window(grants, 1.0) <= limit
    # Saturated from three processes, the limiter still hands out (nearly) every slot.
    assert len(grants) >= 0.9 * limit * seconds
    assert all(per_process)  # every process got its share, none was starved


def test_waiting_callers_keep_throughput_near_the_limit(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, "waiters", rate="25/s", key_prefix=prefix)
    grants: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 2.0

    def worker() -> None:
        while time.monotonic() < stop:
            limiter.acquire(timeout=5)
            with lock:
                grants.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    first = min(grants)
    # Past the first second, sleeping waiters must still use >= 90% of the slots.
    steady = [t for t in grants if first + 1.0 <= t < first + 2.0]
    assert len(steady) >= 0.9 * 25


def _acquire_spaced(limiter: RateLimiter, count: int) -> None:
    """Take ``count`` grants, each as soon as the spacing allows."""
    for _ in range(count):
        limiter.acquire(timeout=5)


def test_refused_attempts_consume_nothing(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, "refusals", rate="5/s", key_prefix=prefix)
    _acquire_spaced(limiter, 5)

    waits = [limiter.try_acquire() for _ in range(50)]
    assert all(0.0 < w <= 1.0 for w in waits)
    assert limiter.usage().requests == 5

    time.sleep(1.05)
    # Had the 50 refusals been recorded, the window (and the spacing) would refuse.
    assert limiter.try_acquire() == 0.0
    assert limiter.usage().requests == 1


def test_grants_are_spaced_by_period_over_limit(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, "spaced", rate="20/s", key_prefix=prefix)
    grants: list[float] = []
    refused = 0
    stop = time.monotonic() + 1.5
    while time.monotonic() < stop:
        decision = limiter.attempt()
        if decision.granted:
            grants.append(decision.at)
        else:
            refused += 1
            assert 0.0 < decision.wait <= 0.05 + 1e-6
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    # The old window log gave 20 grants back to back here; spacing allows one per 50 ms.
    assert len(grants) >= 25 and refused > 0
    assert min(gaps) >= 0.05 - 0.001
    assert _max_in_any_window(grants, 1.0) <= 20


def test_jitter_widens_the_spacing_so_late_arrivals_still_fit(
    client: redis.Redis, prefix: str
) -> None:
    # 10/s with 0.5 s of allowed lateness: grants (1 + 0.5) / 10 = 150 ms apart.
    limiter = RateLimiter(client, "jittered", rate="10/s", key_prefix=prefix, jitter=0.5)
    first = limiter.attempt()
    second = limiter.attempt()
    assert first.granted and not second.granted
    assert 0.14 < second.wait <= 0.15 + 1e-6
    grants = [first.at]
    while len(grants) < 6:
        decision = limiter.attempt()
        if decision.granted:
            grants.append(decision.at)
        else:
            time.sleep(decision.wait)
    # Each grant delayed by anything from 0 to 0.5 s still leaves <= 10 in any 1-s window.
    assert min(b - a for a, b in itertools.pairwise(grants)) >= 0.15 - 0.001
    with pytest.raises(ConfigurationError, match="jitter"):
        RateLimiter(client, "bad", rate="10/s", key_prefix=prefix, jitter=-1)


def test_refused_token_requests_consume_no_tokens(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(
        client, "token-refusals", rate="100/s", tokens_per_minute=100, key_prefix=prefix
    )
    assert limiter.try_acquire(tokens=60) == 0.0
    assert all(limiter.try_acquire(tokens=50) > 59.0 for _ in range(10))  # 60 + 50 > 100
    assert limiter.usage().tokens == 60
    time.sleep(0.011)  # past the 10 ms spacing of 100/s
    assert limiter.try_acquire(tokens=40) == 0.0  # exactly the budget
    assert limiter.usage().requests == 2


def test_token_budget_refuses_and_adjust_tokens_corrects_it(
    client: redis.Redis, prefix: str
) -> None:
    limiter = RateLimiter(client, "tokens", rate="100/s", tokens_per_minute=1000, key_prefix=prefix)
    assert limiter.try_acquire(tokens=800) == 0.0

    wait = limiter.try_acquire(tokens=300)
    assert 59.0 < wait <= 60.0  # the 800 leave the window only after a minute

    assert limiter.adjust_tokens(-500) == 300  # the call really used 300
    time.sleep(0.011)  # past the 10 ms spacing of 100/s
    assert limiter.try_acquire(tokens=300) == 0.0
    assert limiter.usage().tokens == 600

    assert limiter.adjust_tokens(+500) == 1100  # and this one 800, not 300
    assert limiter.try_acquire() > 59.0  # over budget: even a call without estimate waits
    usage = limiter.usage()
    assert (usage.requests, usage.tokens) == (2, 1100)
    assert usage.utilization == 1.0

    with pytest.raises(ConfigurationError, match="can never fit"):
        limiter.try_acquire(tokens=1001)


def test_acquire_gives_up_at_once_when_the_timeout_cannot_be_met(
    client: redis.Redis, prefix: str
) -> None:
    limiter = RateLimiter(client, "slow", rate="1/m", key_prefix=prefix)
    limiter.acquire()
    began = time.monotonic()
    with pytest.raises(RateLimitExceededError) as caught:
        limiter.acquire(timeout=5)
    assert time.monotonic() - began < 1.0  # did not sleep towards a slot a minute away
    assert caught.value.retry_after is not None and 55 < caught.value.retry_after <= 60
    assert caught.value.retry_strategy == "after"
    assert caught.value.context["rate_limiter"] == "slow"


def test_acquire_async_waits_for_the_next_slot(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, "async", rate="2/s", key_prefix=prefix)

    async def three() -> list[float]:
        return [await limiter.acquire_async(timeout=3) for _ in range(3)]

    waited = asyncio.run(three())
    assert waited[0] < 0.1
    # Spaced by period / limit = 0.5 s, not two at once and then a second's wait.
    assert 0.45 < waited[1] < 0.8 and 0.45 < waited[2] < 0.8


def test_limiter_keys_expire_on_their_own(client: redis.Redis, prefix: str) -> None:
    limiter = RateLimiter(client, "ttl", rate="10/s", tokens_per_minute=500, key_prefix=prefix)
    limiter.try_acquire(tokens=5)
    for key in (limiter.requests_key, limiter.tokens_key, limiter.meta_key):
        assert key.startswith(f"{prefix}:ratelimit:")
        assert 0 < client.pttl(key) <= 61_000


def test_fractional_and_bad_rates(client: redis.Redis, prefix: str) -> None:
    half = RateLimiter(client, "half", rate="0.5/s", key_prefix=prefix)
    assert (half.limit, half.period) == (1, 2.0)
    with pytest.raises(ConfigurationError, match="N/s, N/m or N/h"):
        RateLimiter(client, "bad", rate="ten per minute", key_prefix=prefix)


def test_unreachable_redis_is_a_dspyq_error(prefix: str) -> None:
    dead = "redis://:s3cret@127.0.0.1:1/0"
    with pytest.raises(RedisUnavailableError) as caught:
        redis_from_url(dead)
    assert "s3cret" not in str(caught.value) and "s3cret" not in str(caught.value.context)

    limiter = RateLimiter(redis_from_url(dead, check=False), "dead", key_prefix=prefix)
    with pytest.raises(RedisUnavailableError) as caught:
        limiter.try_acquire()
    assert caught.value.retry_strategy == "backoff"
    assert caught.value.context["rate_limiter"] == "dead"


def test_redacted_url_hides_only_the_password() -> None:
    assert redacted_url("redis://user:pw@host:6380/2") == "redis://user:***@host:6380/2"
    assert redacted_url("redis://host:6379/0") == "redis://host:6379/0"
