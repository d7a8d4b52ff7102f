"""The provider gate against a real Redis: breaker and limiter asked in one round trip,
the breaker first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from dspyq.errors import CircuitOpenError, ProviderUnavailableError, RateLimitExceededError
from dspyq.lm.redis_cache import RedisCache
from dspyq.lm.request import LMResponse, Usage
from dspyq.resilience.gate import RedisProviderGate
from dspyq.settings import Settings

pytestmark = pytest.mark.integration


class _CountingConnection(redis.Connection):
    """A connection that counts the writes it sends: one per round trip."""

    sent: list[int]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.sent[0] += 1
        super().send_packed_command(command, check_health)

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        # A new connection's handshake is made once, not by each call: not counted.
        before = self.sent[0]
        super().connect_check_health(*args, **kwargs)
        self.sent[0] = before


class CountingRedis(redis.Redis):
    """A real client that counts its round trips to Redis, whatever way each is made
    (a command or a pipeline)."""

    _sent: list[int]

    @property
    def round_trips(self) -> int:
        return self._sent[0]

    @round_trips.setter
    def round_trips(self, value: int) -> None:
        self._sent[0] = value


@pytest.fixture
def counting(redis_url: str) -> Iterator[CountingRedis]:
    sent = [0]
    connection_class = type("Counting", (_CountingConnection,), {"sent": sent})
    conn = CountingRedis.from_url(redis_url, connection_class=connection_class)
    conn._sent = sent
    yield conn
    conn.close()


def _gate(
    conn: redis.Redis, prefix: str, max_inline_wait: float = 1.0, **provider: Any
) -> RedisProviderGate:
    conf = {"api_base": "http://127.0.0.1:9/v1", "rate_limit": "1000/s", **provider}
    settings = Settings(providers={"openai": conf})
    return RedisProviderGate(conn, settings, key_prefix=prefix, max_inline_wait=max_inline_wait)


def _load_scripts(gate: RedisProviderGate) -> None:
    gate.load_scripts("openai")


def _down() -> str:
    raise ProviderUnavailableError("provider answered 503")


def test_a_granted_call_to_a_closed_breaker_asks_redis_once(
    counting: CountingRedis, prefix: str
) -> None:
    gate = _gate(counting, prefix)
    _load_scripts(gate)  # as on any call but a worker's first (or the first after a flush)
    counting.round_trips = 0
    assert gate.run("openai", 0, lambda: "answer") == "answer"
    assert counting.round_trips == 1  # breaker and limiter together
    assert gate.guards("openai").limiter.usage().requests == 1


def test_an_open_breaker_refuses_a_granted_call_without_running_it(
    counting: CountingRedis, prefix: str
) -> None:
    gate = _gate(counting, prefix, breaker_fail_max=1, breaker_reset_timeout=30)
    with pytest.raises(ProviderUnavailableError):
        gate.run("openai", 0, _down)
    ran: list[bool] = []
    with pytest.raises(CircuitOpenError):
        gate.run("openai", 0, lambda: ran.append(True))
    assert ran == []


def test_a_request_the_limiter_refuses_gives_the_probe_turn_back(
    counting: CountingRedis, prefix: str
) -> None:
    gate = _gate(
        counting,
        prefix,
        max_inline_wait=0.0,
        rate_limit="1/m",
        breaker_fail_max=1,
        breaker_reset_timeout=0.2,
    )
    with pytest.raises(ProviderUnavailableError):
        gate.run("openai", 0, _down)  # spends the minute's one request, opens the breaker
    time.sleep(0.3)  # the breaker may half-open: the next admitted call is its probe
    with pytest.raises(RateLimitExceededError):
        gate.run("openai", 0, lambda: "never runs")
    breaker = gate.guards("openai").breaker
    assert breaker.state == "half-open"
    assert breaker.storage.snapshot().probe_until_us == 0  # no probe holds the turn


def test_scripts_lost_by_redis_are_loaded_again(counting: CountingRedis, prefix: str) -> None:
    gate = _gate(counting, prefix)
    assert gate.run("openai", 0, lambda: "first") == "first"
    counting.script_flush()  # as after a restart without persistence
    assert gate.run("openai", 0, lambda: "second") == "second"
    assert gate.guards("openai").limiter.usage().requests == 2


# --- the L2 cache entry read in the gate's round trip (dspyq.lm.cache_peek) ---------------

CACHED = LMResponse(outputs=["cached answer"], usage=Usage.of(3, 1), model="m")


def _never() -> LMResponse:
    raise AssertionError("the provider was called for an answer the cache holds")


def _sent() -> LMResponse:
    return LMResponse(outputs=["from the provider"], model="m")


def _cache(conn: redis.Redis, prefix: str) -> RedisCache:
    return RedisCache(conn, ttl=60, key_prefix=prefix)


def test_a_cached_answer_read_with_the_gate_spends_nothing(
    counting: CountingRedis, prefix: str
) -> None:
    gate, cache = _gate(counting, prefix), _cache(counting, prefix)
    cache.put("k1", CACHED)
    _load_scripts(gate)
    hits: list[LMResponse] = []
    peek = cache.peek("k1")
    peek.on_hit = hits.append
    assert gate.can_peek(peek)
    counting.round_trips = 0
    assert gate.run("openai", 10, _never, peek) == CACHED
    assert counting.round_trips == 2  # the gate's, then the unused grant taken back
    assert peek.hit == CACHED and hits == [CACHED]
    assert gate.guards("openai").limiter.usage().requests == 0


def test_a_miss_read_with_the_gate_is_granted_in_the_same_round_trip(
    counting: CountingRedis, prefix: str
) -> None:
    gate, cache = _gate(counting, prefix), _cache(counting, prefix)
    _load_scripts(gate)
    peek = cache.peek("absent")
    counting.round_trips = 0
    assert gate.run("openai", 10, _sent, peek).outputs == ["from the provider"]
    assert counting.round_trips == 1
    assert peek.hit is None
    assert gate.guards("openai").limiter.usage().requests == 1


def test_a_cached_answer_is_served_while_the_limiter_or_the_breaker_would_refuse(
    counting: CountingRedis, prefix: str
) -> None:
    gate = _gate(counting, prefix, max_inline_wait=0.0, rate_limit="1/m", breaker_fail_max=1)
    cache = _cache(counting, prefix)
    with pytest.raises(ProviderUnavailableError):
        gate.run("openai", 0, _down)  # the minute's one request spent, the breaker open
    cache.put("k1", CACHED)
    assert gate.run("openai", 0, _never, cache.peek("k1")) == CACHED
    with pytest.raises(CircuitOpenError):  # the breaker is asked first: no waiting on the limiter
        gate.run("openai", 0, _sent, cache.peek("absent"))
    assert gate.guards("openai").limiter.usage().requests == 1


def test_a_cached_answer_takes_no_probe_from_a_half_open_breaker(
    counting: CountingRedis, prefix: str
) -> None:
    gate = _gate(counting, prefix, breaker_fail_max=1, breaker_reset_timeout=0.2)
    cache = _cache(counting, prefix)
    with pytest.raises(ProviderUnavailableError):
        gate.run("openai", 0, _down)
    time.sleep(0.3)
    cache.put("k1", CACHED)
    assert gate.run("openai", 0, _never, cache.peek("k1")) == CACHED
    assert gate.run("openai", 0, _sent, cache.peek("absent")).outputs == ["from the provider"]
    assert gate.guards("openai").breaker.state == "closed"  # that call was the probe


def test_a_grant_taken_back_no_longer_counts_its_request_or_tokens(
    counting: CountingRedis, prefix: str
) -> None:
    gate = _gate(counting, prefix, tokens_per_minute=1000)
    limiter = gate.guards("openai").limiter
    kept = limiter.attempt(5)
    time.sleep(0.01)  # past the spacing between grants
    released = limiter.attempt(7)
    assert kept.granted and released.granted and released.grant != kept.grant
    assert limiter.usage().requests == 2 and limiter.usage().tokens == 12
    limiter.release(released)
    limiter.release(released)  # twice: nothing more is taken back
    assert limiter.usage().requests == 1 and limiter.usage().tokens == 5


def test_an_unreadable_entry_is_dropped_and_the_call_goes_out(
    counting: CountingRedis, prefix: str
) -> None:
    gate, cache = _gate(counting, prefix), _cache(counting, prefix)
    counting.set(cache.redis_key("k1"), "not an LM response")
    assert gate.run("openai", 0, _sent, cache.peek("k1")).outputs == ["from the provider"]
    assert counting.exists(cache.redis_key("k1")) == 0
    assert gate.guards("openai").limiter.usage().requests == 1


def test_an_entry_redis_cannot_read_is_a_miss_not_a_failure(
    counting: CountingRedis, prefix: str
) -> None:
    gate, cache = _gate(counting, prefix), _cache(counting, prefix)
    counting.hset(cache.redis_key("k1"), "field", "a hash, not a string")  # GET: WRONGTYPE
    peek = cache.peek("k1")
    assert gate.run("openai", 0, _sent, peek).outputs == ["from the provider"]
    assert not peek.usable
    assert gate.guards("openai").limiter.usage().requests == 1


def test_a_gate_on_another_redis_client_cannot_take_the_read(
    counting: CountingRedis, prefix: str, redis_url: str
) -> None:
    other = redis.Redis.from_url(redis_url)
    try:
        assert not _gate(counting, prefix).can_peek(_cache(other, prefix).peek("k1"))
    finally:
        other.close()


# --- the breaker first, in both paths ------------------------------------------------------


def test_an_open_breaker_refuses_at_once_without_spending_the_limiters_budget(
    counting: CountingRedis, prefix: str
) -> None:
    gate = _gate(counting, prefix, max_inline_wait=5.0, rate_limit="1/m", breaker_fail_max=1)
    with pytest.raises(ProviderUnavailableError):
        gate.run("openai", 0, _down)  # the minute's one request spent, the breaker open
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(CircuitOpenError):
            gate.run("openai", 0, _never)
    assert time.monotonic() - started < 1.0  # no waiting for the limiter's next slot
    assert gate.guards("openai").limiter.usage().requests == 1


def test_the_async_path_asks_the_breaker_first_too(counting: CountingRedis, prefix: str) -> None:
    gate = _gate(counting, prefix, max_inline_wait=5.0, rate_limit="1/m", breaker_fail_max=1)

    async def down() -> str:
        raise ProviderUnavailableError("provider answered 503")

    async def never() -> str:
        raise AssertionError("sent through an open breaker")

    async def scenario() -> float:
        with pytest.raises(ProviderUnavailableError):
            await gate.arun("openai", 0, down)
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(CircuitOpenError):
                await gate.arun("openai", 0, never)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.0
    assert gate.guards("openai").limiter.usage().requests == 1


def test_concurrent_async_callers_send_one_probe_to_a_half_open_breaker(
    counting: CountingRedis, prefix: str
) -> None:
    gate = _gate(counting, prefix, breaker_fail_max=1, breaker_reset_timeout=0.2)
    with pytest.raises(ProviderUnavailableError):
        gate.run("openai", 0, _down)
    time.sleep(0.3)
    sent: list[int] = []

    async def slow_probe() -> str:
        sent.append(1)
        await asyncio.sleep(0.3)
        return "up"

    async def attempt() -> str:
        try:
            return await gate.arun("openai", 0, slow_probe)
        except CircuitOpenError:
            return "refused"

    async def scenario() -> list[str]:
        return list(await asyncio.gather(*(attempt() for _ in range(12))))

    outcomes = asyncio.run(scenario())
    assert sent == [1]
    assert sorted(outcomes) == ["refused"] * 11 + ["up"]
    assert gate.guards("openai").breaker.state == "closed"
