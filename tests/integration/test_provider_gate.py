"""The provider gate against a real Redis: limiter and breaker asked in one round trip,
with the rules of asking them one after the other."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.client import Pipeline

from dspyq.errors import CircuitOpenError, ProviderUnavailableError, RateLimitExceededError
from dspyq.resilience.gate import RedisProviderGate
from dspyq.settings import Settings

pytestmark = pytest.mark.integration


class CountingRedis(redis.Redis):
    """A real client that counts its round trips to Redis (a pipeline is one)."""

    round_trips = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        owner = self

        class _Counted(Pipeline):
            def execute(self, raise_on_error: bool = True) -> list[Any]:
                owner.round_trips += 1
                return super().execute(raise_on_error)

        return _Counted(self.connection_pool, self.response_callbacks, transaction, shard_hint)


@pytest.fixture
def counting(redis_url: str) -> Iterator[CountingRedis]:
    conn = CountingRedis.from_url(redis_url)
    yield conn
    conn.close()


def _gate(
    conn: redis.Redis, prefix: str, max_inline_wait: float = 1.0, **provider: Any
) -> RedisProviderGate:
    conf = {"api_base": "http://127.0.0.1:9/v1", "rate_limit": "1000/s", **provider}
    settings = Settings(providers={"openai": conf})
    return RedisProviderGate(conn, settings, key_prefix=prefix, max_inline_wait=max_inline_wait)


def _down() -> str:
    raise ProviderUnavailableError("provider answered 503")


def test_a_granted_call_to_a_closed_breaker_asks_redis_once(
    counting: CountingRedis, prefix: str
) -> None:
    gate = _gate(counting, prefix)
    gate.guards("openai")  # built (and its scripts registered) beforehand
    counting.round_trips = 0
    assert gate.run("openai", 0, lambda: "answer") == "answer"
    assert counting.round_trips == 1  # limiter and breaker together
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
