"""The provider gate of a worker pool: a shared circuit breaker, then a shared rate limiter.

:class:`RedisProviderGate` implements :class:`dspyq.lm.gate.ProviderGate`. For each
provider it keeps one :class:`~dspyq.resilience.ratelimit.RateLimiter` and one
:class:`~dspyq.resilience.breaker.CircuitBreaker`, configured from the provider's
settings and shared through Redis by every process of the pool. An attempt:

1. is refused at once with :class:`~dspyq.errors.CircuitOpenError` while the provider's
   breaker is open (no limiter budget is spent, nothing is sent; a job with fallbacks
   moves on to the next provider at once). In half-open state exactly one attempt of
   the whole pool is let through as the probe;
2. takes a request (and its estimated tokens) from the limiter. A short wait
   (``max_inline_wait``) is slept through here, asking the breaker again on each try; a
   longer one raises :class:`~dspyq.errors.RateLimitExceededError` with ``retry_after``
   so the task can re-queue itself with a countdown instead of holding a worker slot;
3. runs, its outcome recorded by the breaker (a refusal by the limiter never counts
   as a provider failure or success), and corrects the token budget with the real
   usage once the provider has reported it.

Steps 1 and 2 are one Lua script and one Redis round trip
(:mod:`dspyq.resilience.admission`); the sync and async paths take the same steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from redis.exceptions import NoScriptError

from dspyq.core import observe
from dspyq.errors import CircuitOpenError, RateLimitExceededError
from dspyq.lm.cache_peek import CachePeek
from dspyq.lm.request import LMResponse
from dspyq.resilience.admission import GateReply, GateScript
from dspyq.resilience.breaker import Admission, CircuitBreaker
from dspyq.resilience.ratelimit import RateLimiter
from dspyq.resilience.redis_client import redis_errors
from dspyq.settings import Settings, get_settings

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "BREAKER_STATE_CHANGE",
    "DEFAULT_MAX_INLINE_WAIT",
    "RATE_LIMIT_REJECTED",
    "ProviderGuards",
    "RedisProviderGate",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_INLINE_WAIT = 2.0
"""Longest rate-limit wait (seconds) slept through inside a call rather than re-queued."""

BREAKER_STATE_CHANGE = "circuit_breaker_state_change"
"""Event emitted when this process moves a provider's breaker (data: provider, from, to)."""

RATE_LIMIT_REJECTED = "rate_limit_rejected"
"""Event emitted when the limiter refuses a call past the inline wait (data: provider,
retry_after); the job then waits off the worker."""


@dataclass(frozen=True)
class ProviderGuards:
    """The limiter and breaker of one provider."""

    limiter: RateLimiter
    breaker: CircuitBreaker


class RedisProviderGate:
    """Rate limiter and circuit breaker per provider, shared in Redis under ``key_prefix``.

    ``settings`` (default: the process settings) gives each provider's ``rate_limit``,
    ``tokens_per_minute``, ``breaker_fail_max`` and ``breaker_reset_timeout``.
    """

    def __init__(
        self,
        redis: Redis,
        settings: Settings | None = None,
        key_prefix: str = "dspyq",
        *,
        max_inline_wait: float = DEFAULT_MAX_INLINE_WAIT,
    ) -> None:
        if max_inline_wait < 0:
            raise ValueError(f"max_inline_wait must be >= 0, got {max_inline_wait}")
        self.redis = redis
        self.settings = settings or get_settings()
        self.key_prefix = key_prefix
        self.max_inline_wait = max_inline_wait
        self._guards: dict[str, ProviderGuards] = {}
        self._lock = threading.Lock()
        self._script = GateScript(redis)

    def guards(self, provider: str) -> ProviderGuards:
        """The limiter and breaker of ``provider``, built on first use."""
        guards = self._guards.get(provider)
        if guards is not None:
            return guards
        with self._lock:
            guards = self._guards.get(provider)
            if guards is None:
                conf = self.settings.provider(provider)
                limiter = RateLimiter(
                    self.redis,
                    provider,
                    rate=conf.rate_limit,
                    tokens_per_minute=conf.tokens_per_minute,
                    key_prefix=self.key_prefix,
                    jitter=conf.rate_limit_jitter,
                )
                breaker = CircuitBreaker(
                    self.redis,
                    provider,
                    fail_max=conf.breaker_fail_max,
                    reset_timeout=conf.breaker_reset_timeout,
                    key_prefix=self.key_prefix,
                    listeners=[_emit_state_change],
                    # The probe's lease outlasts its request: a slow probe is not joined
                    # by a second one.
                    probe_timeout=max(conf.breaker_reset_timeout, conf.timeout + 5.0, 30.0),
                )
                guards = ProviderGuards(limiter, breaker)
                self._guards[provider] = guards
        return guards

    def reconfigure(self) -> None:
        """Build each provider's limiter and breaker again, from the settings as they are
        now, on its next use (after a live settings change)."""
        with self._lock:
            self._guards = {}

    def run(
        self,
        provider: str,
        estimated_tokens: int,
        fn: Callable[[], T],
        peek: CachePeek | None = None,
    ) -> T:
        """One attempt at ``provider``: breaker, then limiter, then ``fn``.

        With a ``peek`` (see :meth:`can_peek`) the cache entry is read in the same round
        trip; if it is there, it is the answer (``peek.hit``): ``fn`` is not called and
        the limiter's grant, if it made one, is taken back.
        """
        guards = self.guards(provider)
        tokens = self._budgeted(guards.limiter, estimated_tokens)
        start = time.monotonic()
        while True:
            step = self._step(provider, guards, tokens, start, peek)
            if isinstance(step, Admission):
                break
            if peek is not None and peek.hit is not None:
                return cast(T, peek.hit)
            time.sleep(step)
        result = guards.breaker.call_admitted(step, fn)
        self._settle(guards.limiter, tokens, result)
        return result

    async def arun(self, provider: str, estimated_tokens: int, fn: Callable[[], Awaitable[T]]) -> T:
        """Async twin of :meth:`run` (the same steps); Redis calls run off the event loop."""
        guards = self.guards(provider)
        tokens = self._budgeted(guards.limiter, estimated_tokens)
        start = time.monotonic()
        while True:
            step = await asyncio.to_thread(self._step, provider, guards, tokens, start)
            if isinstance(step, Admission):
                break
            await asyncio.sleep(step)
        result = await guards.breaker.call_admitted_async(step, fn)
        if guards.limiter.tokens_per_minute is not None and _tokens_used(result):
            await asyncio.to_thread(self._settle, guards.limiter, tokens, result)
        return result

    def can_peek(self, peek: CachePeek) -> bool:
        """Whether this gate can make ``peek``'s read: its entry is in this gate's Redis."""
        return peek.redis is self.redis

    def load_scripts(self, provider: str) -> None:
        """Make sure Redis knows the scripts an attempt at ``provider`` runs."""
        guards = self.guards(provider)
        with redis_errors("provider gate script load", provider=provider):
            self._script.load()
        guards.limiter.load_scripts()

    def _step(
        self,
        provider: str,
        guards: ProviderGuards,
        tokens: int,
        start: float,
        peek: CachePeek | None = None,
    ) -> Admission | float:
        """One try since ``start`` (``time.monotonic()``): the breaker's admission, or the
        seconds to sleep before the next try (the cache answered when ``peek.hit`` is set).

        Raises CircuitOpenError at once while the breaker is open, whatever the limiter
        would say, and RateLimitExceededError (``retry_after`` set) when the limiter's
        wait would outlast ``max_inline_wait``.
        """
        if peek is not None and not peek.usable:
            peek = None  # the cache could not be read: ask without it
        admission, wait = self._admitted_at_once(guards, tokens, peek)
        if admission is not None or (peek is not None and peek.hit is not None):
            return admission if admission is not None else 0.0
        try:
            return guards.limiter.sleep_time(wait, start, self.max_inline_wait)
        except RateLimitExceededError as error:
            error.context.setdefault("provider", provider)
            _emit_rejection(provider, error)
            raise

    def _admitted_at_once(
        self, guards: ProviderGuards, tokens: int, peek: CachePeek | None = None
    ) -> tuple[Admission | None, float]:
        """Ask the breaker, then the limiter (and read ``peek``'s entry) in one Redis round
        trip: the breaker's admission if both let the call through, else None and the
        limiter's wait. Raises CircuitOpenError while the breaker refuses (the limiter
        was not asked). A cached answer found sets ``peek.hit`` and wins over both: a
        grant is taken back and a probe's turn given back, since nothing will be sent."""
        limiter, breaker = guards.limiter, guards.breaker
        with redis_errors("provider gate", provider=limiter.name):
            try:
                raw, reply = self._ask(guards, tokens, peek)
            except NoScriptError:  # Redis restarted or was flushed: load the scripts again
                self._script.load()
                limiter.load_scripts()
                raw, reply = self._ask(guards, tokens, peek)
        if peek is not None and self._found(peek, raw):
            if reply.limiter is not None and reply.limiter.granted:
                self._give_back(breaker, reply)
                try:
                    limiter.release(reply.limiter)
                except Exception:  # the answer is there; an unreleased grant only costs budget
                    logger.exception("could not take back an unused grant of %r", limiter.name)
            return None, 0.0
        admission = breaker.admitted(reply.breaker)  # raises CircuitOpenError when refused
        assert reply.limiter is not None
        if reply.limiter.granted:
            return admission, 0.0
        return None, reply.limiter.wait  # a probe's turn was given back by the script

    @staticmethod
    def _give_back(breaker: CircuitBreaker, reply: GateReply) -> None:
        with contextlib.suppress(CircuitOpenError):
            breaker.give_back(breaker.admitted(reply.breaker))

    @staticmethod
    def _found(peek: CachePeek, raw: Any) -> bool:
        if isinstance(raw, Exception):  # the entry could not be read: a miss, not a failure
            logger.warning("could not read LM cache entry %s: %s", peek.key, raw)
            peek.usable = False
            return False
        return peek.found(raw)

    def _ask(
        self, guards: ProviderGuards, tokens: int, peek: CachePeek | None
    ) -> tuple[Any, GateReply]:
        """The cache entry's raw value (None without ``peek``; an exception if it could
        not be read) and the admission script's reply, from one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            if peek is not None:
                pipe.get(peek.key)
            self._script.queue(pipe, guards.breaker, guards.limiter, tokens)
            replies = pipe.execute(raise_on_error=False)
        raw = replies[0] if peek is not None else None
        if isinstance(replies[-1], Exception):
            raise replies[-1]
        return raw, GateScript.reply(replies[-1], tokens)

    @staticmethod
    def _budgeted(limiter: RateLimiter, estimated_tokens: int) -> int:
        # Without a token budget the estimate is meaningless to the limiter. With one, an
        # estimate beyond the whole budget (a loose guess) waits for a full budget rather
        # than being refused forever.
        if limiter.tokens_per_minute is None:
            return 0
        return max(0, min(int(estimated_tokens), limiter.tokens_per_minute))

    @staticmethod
    def _settle(limiter: RateLimiter, estimated: int, result: object) -> None:
        # Streams (their result is the first chunk) and answers without usage keep the
        # estimate: conservative, never an under-count.
        used = _tokens_used(result)
        if limiter.tokens_per_minute is None or not used or used == estimated:
            return
        try:
            limiter.adjust_tokens(used - estimated)
        except Exception:
            # The provider already answered; a lost correction only skews the budget.
            logger.exception("could not correct the token budget of %r", limiter.name)


def _tokens_used(result: object) -> int:
    if isinstance(result, LMResponse):
        return result.usage.total_tokens or (
            result.usage.prompt_tokens + result.usage.completion_tokens
        )
    return 0


def _emit_state_change(provider: str, old: str, new: str) -> None:
    observe.emit(BREAKER_STATE_CHANGE, {"provider": provider, "from": old, "to": new})


def _emit_rejection(provider: str, error: RateLimitExceededError) -> None:
    observe.emit(RATE_LIMIT_REJECTED, {"provider": provider, "retry_after": error.retry_after})
