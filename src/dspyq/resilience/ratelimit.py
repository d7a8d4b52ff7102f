"""A rate limiter in Redis, shared by every worker process of a pool.

Algorithm: a sliding-window log plus a minimum spacing. Each granted request is a
member of a sorted set scored by the Redis server time of the grant; a request is
granted only if fewer than ``limit`` grants lie in the last ``period`` AND at least
``period / limit`` has passed since the previous grant. The window check makes the
guarantee exact: no window of length ``period``, wherever it starts, ever holds more
than ``limit`` grants, whatever the number of processes (GCRA or a token bucket would
allow a burst on top of a steady flow, i.e. up to twice the limit in some window).

Why the spacing: providers count requests when they arrive, not when we grant them.
A bare window log lets ``limit`` requests go at once each time the window frees up,
and each request reaches the provider some milliseconds after its grant (network,
scheduling, a loaded worker), so a window measured at the provider's door can catch
a burst plus stragglers of the previous one and exceed the limit. Spaced grants leave
no burst to straddle a window edge. A request that arrives late by up to ``jitter``
seconds can still land in the same provider-side window as later ones, so the spacing
is ``(period + jitter) / limit``: ``limit`` grants then span more than
``period + jitter``, and no window at the provider's door sees more than ``limit``
arrivals. Under saturation throughput is ``limit * period / (period + jitter)``: 0.2%
below the limit for 600/m with the default 0.1 s of jitter, 9% below for 20/s. The price is memory: one entry
per request of the last period, which is small for LM rates (600/m is 600 entries),
and one more field for the last grant time.

The optional token budget (``tokens_per_minute``) is a second log of the same kind
whose entries carry token amounts, with a running sum kept beside it. It is not
spaced: one large request may take most of the budget at once, as providers allow.

Every decision is one Lua script, so check-and-record is atomic across processes,
and the script reads the clock with ``TIME``: the clocks of the workers' machines
never matter. A refused attempt records nothing and returns how long until it
would fit (the longest of the window, spacing and token waits). Every key gets a TTL
of a period (plus a second) on each write, so an idle limiter leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from dspyq.errors import ConfigurationError, RateLimitExceededError
from dspyq.resilience.ratelimit_scripts import ACQUIRE, ADJUST, RELEASE, USAGE
from dspyq.resilience.redis_client import redis_errors
from dspyq.settings import get_settings, parse_rate

__all__ = ["Decision", "RateLimitUsage", "RateLimiter"]

_US = 1_000_000


@dataclass(frozen=True)
class Decision:
    """One limiter decision: granted or not, how long until it would fit, and when."""

    granted: bool
    wait: float
    """Seconds until the request would fit (0.0 when granted)."""
    at: float
    """Redis server time of the decision, in seconds since the epoch."""
    grant: str | None = None
    """The grant's entry in the log (None when refused), to take it back with
    :meth:`RateLimiter.release` if the request is not made after all."""
    tokens: int = 0
    """The tokens the grant took from the budget."""


@dataclass(frozen=True)
class RateLimitUsage:
    """What a limiter has spent in its current window, for dashboards."""

    name: str
    requests: int
    limit: int
    period: float
    tokens: int
    tokens_per_minute: int | None

    @property
    def utilization(self) -> float:
        """Share of the request limit in use, 0.0 to 1.0 (tokens included when tighter)."""
        share = self.requests / self.limit
        if self.tokens_per_minute:
            share = max(share, self.tokens / self.tokens_per_minute)
        return min(share, 1.0)


def _window(rate: str) -> tuple[int, float]:
    """``"600/m"`` -> ``(600, 60.0)``; fractional rates become a whole count per longer period."""
    try:
        count, period = parse_rate(rate)
    except ValueError as exc:
        raise ConfigurationError(str(exc), context={"rate": rate}) from exc
    if count <= 0:
        raise ConfigurationError(f"rate limit {rate!r} must allow at least some requests")
    if count < 1:
        # "0.5/s" is one request per two seconds.
        return 1, period / count
    # "2.5/s" rounds down: a limiter may be stricter than asked, never looser.
    return math.floor(count), period


class RateLimiter:
    """Requests per period (and optionally tokens per minute) for everyone sharing ``name``.

    All processes that build a limiter with the same ``redis``, ``key_prefix`` and
    ``name`` share one budget; ``rate`` and ``tokens_per_minute`` should agree
    between them (the strictest caller wins for its own requests).
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        rate: str = "600/m",
        tokens_per_minute: int | None = None,
        key_prefix: str = "dspyq",
        jitter: float = 0.0,
    ) -> None:
        if jitter < 0:
            raise ConfigurationError(
                f"rate-limit jitter must be >= 0 seconds, got {jitter}",
                context={"rate_limiter": name},
            )
        if tokens_per_minute is not None and tokens_per_minute <= 0:
            raise ConfigurationError(
                f"tokens_per_minute must be positive or None, got {tokens_per_minute}",
                context={"rate_limiter": name},
            )
        self.redis = redis
        self.name = name
        self.rate = rate
        self.limit, self.period = _window(rate)
        self.tokens_per_minute = tokens_per_minute
        base = f"{key_prefix}:ratelimit:{{{name}}}"  # hash tag: one cluster slot
        self.requests_key = f"{base}:requests"
        self.tokens_key = f"{base}:tokens"
        self.meta_key = f"{base}:meta"
        window_s = max(self.period, 60.0 if tokens_per_minute else 0.0)
        self._ttl_ms = int(window_s * 1000) + 1000
        self._period_us = round(self.period * _US)
        # Grants ``(period + jitter) / limit`` apart: requests that reach the provider up
        # to ``jitter`` seconds late still fit ``limit`` per ``period`` at its door.
        # Rounded up: spacing may make the limiter a hair stricter, never looser.
        self.jitter = jitter
        self._spacing_us = -(-(self._period_us + round(jitter * _US)) // self.limit)
        self._acquire_script = redis.register_script(ACQUIRE)
        self._adjust_script = redis.register_script(ADJUST)
        self._release_script = redis.register_script(RELEASE)
        self._usage_script = redis.register_script(USAGE)

    @classmethod
    def for_provider(cls, redis: Redis, provider: str, key_prefix: str = "dspyq") -> RateLimiter:
        """The limiter of a provider's pool, with the rate and token budget from settings."""
        conf = get_settings().provider(provider)
        return cls(
            redis,
            provider,
            rate=conf.rate_limit,
            tokens_per_minute=conf.tokens_per_minute,
            key_prefix=key_prefix,
            jitter=conf.rate_limit_jitter,
        )

    def attempt(self, tokens: int = 0) -> Decision:
        """Try to take one request (and ``tokens`` of the token budget) right now.

        Nothing is recorded when refused. Raises ConfigurationError when ``tokens``
        alone exceed the per-minute budget, since waiting would never help.
        """
        keys, args = self.acquire_call(tokens)
        with redis_errors("rate limiter acquire", rate_limiter=self.name):
            reply = self._acquire_script(keys=keys, args=args)
        return self.decision(reply, tokens)

    def release(self, decision: Decision) -> None:
        """Take back a grant whose request will not be made (its answer was found
        meanwhile): the request and its tokens no longer count. A no-op for a refusal."""
        if decision.grant is None:
            return
        counted = decision.tokens if self.tokens_per_minute is not None else 0
        with redis_errors("rate limiter release", rate_limiter=self.name):
            self._release_script(
                keys=[self.requests_key, self.tokens_key, self.meta_key],
                args=[decision.grant, counted],
            )

    def load_scripts(self) -> None:
        """Make sure Redis knows this limiter's scripts (after a restart or a flush)."""
        with redis_errors("rate limiter script load", rate_limiter=self.name):
            self.redis.script_load(self._acquire_script.script)
            self.redis.script_load(self._release_script.script)

    @staticmethod
    def decision(reply: Any, tokens: int = 0) -> Decision:
        """The :class:`Decision` a reply of the acquire script (asked for ``tokens``)
        stands for."""
        wait_us, now_us, seq = int(reply[0]), int(reply[1]), int(reply[2])
        if wait_us > 0:
            return Decision(granted=False, wait=wait_us / _US, at=now_us / _US)
        return Decision(True, 0.0, now_us / _US, grant=f"{now_us}:{seq}", tokens=tokens)

    def acquire_call(self, tokens: int) -> tuple[list[str], list[int]]:
        """The keys and arguments of the acquire script for ``tokens`` (for a caller that
        runs it inside its own script, see :mod:`dspyq.resilience.admission`)."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        if self.tokens_per_minute is not None and tokens > self.tokens_per_minute:
            raise ConfigurationError(
                f"one request of {tokens} estimated tokens can never fit the budget of "
                f"{self.tokens_per_minute} tokens per minute of {self.name!r}; raise "
                f"DSPYQ_PROVIDERS__{self.name.upper()}__TOKENS_PER_MINUTE",
                context={"rate_limiter": self.name, "tokens": tokens},
            )
        keys = [self.requests_key, self.tokens_key, self.meta_key]
        args = [
            self.limit,
            self._period_us,
            self.tokens_per_minute or 0,
            tokens,
            self._ttl_ms,
            self._spacing_us,
        ]
        return keys, args

    def try_acquire(self, tokens: int = 0) -> float:
        """0.0 if a request was granted, else the seconds until it would fit (nothing spent)."""
        return self.attempt(tokens).wait

    def acquire(self, tokens: int = 0, timeout: float | None = None) -> float:
        """Wait in this process until a request is granted; return the seconds waited.

        Raises RateLimitExceededError (``retry_after`` set) as soon as the wait would
        outlast ``timeout``, rather than sleeping for nothing.
        """
        start = time.monotonic()
        while True:
            wait = self.try_acquire(tokens)
            if wait == 0.0:
                return time.monotonic() - start
            time.sleep(self.sleep_time(wait, start, timeout))

    async def acquire_async(self, tokens: int = 0, timeout: float | None = None) -> float:
        """:meth:`acquire` for asyncio code: the Redis call runs off the event loop."""
        start = time.monotonic()
        while True:
            wait = await asyncio.to_thread(self.try_acquire, tokens)
            if wait == 0.0:
                return time.monotonic() - start
            await asyncio.sleep(self.sleep_time(wait, start, timeout))

    def sleep_time(self, wait: float, start: float, timeout: float | None) -> float:
        """How long a caller refused at ``wait`` sleeps before trying again, having
        waited since ``start`` (``time.monotonic()``); raises RateLimitExceededError
        (``retry_after`` set) when that would outlast ``timeout``."""
        if timeout is not None and time.monotonic() - start + wait > timeout:
            raise RateLimitExceededError(
                f"rate limit of {self.name!r} ({self.rate}) leaves no room within "
                f"{timeout:g}s; next slot in {wait:.3f}s",
                context={"rate_limiter": self.name, "rate": self.rate},
                retry_after=wait,
            )
        # A little jitter so waiters that were refused together do not return together.
        return wait + random.uniform(0.0, min(0.005, wait * 0.1))

    def adjust_tokens(self, delta: int) -> int:
        """Correct the token budget once the real usage is known; returns tokens now in use.

        ``delta`` is real minus estimated tokens. A no-op without a token budget.
        """
        if self.tokens_per_minute is None or delta == 0:
            return self.usage().tokens
        with redis_errors("rate limiter adjust_tokens", rate_limiter=self.name):
            used = self._adjust_script(
                keys=[self.tokens_key, self.meta_key], args=[int(delta), self._ttl_ms]
            )
        return int(used)

    def usage(self) -> RateLimitUsage:
        """Requests and tokens spent in the current window."""
        with redis_errors("rate limiter usage", rate_limiter=self.name):
            count, used, _now = self._usage_script(
                keys=[self.requests_key, self.tokens_key, self.meta_key],
                args=[self._period_us, 1 if self.tokens_per_minute else 0],
            )
        return RateLimitUsage(
            name=self.name,
            requests=int(count),
            limit=self.limit,
            period=self.period,
            tokens=int(used),
            tokens_per_minute=self.tokens_per_minute,
        )

    def reset(self) -> None:
        """Forget every grant and token spent (an operator's reset, or a test's cleanup)."""
        with redis_errors("rate limiter reset", rate_limiter=self.name):
            self.redis.delete(self.requests_key, self.tokens_key, self.meta_key)
