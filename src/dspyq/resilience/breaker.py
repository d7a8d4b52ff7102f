"""A circuit breaker per provider whose state every worker process shares through Redis.

pybreaker supplies the model: its storage contract (``CircuitBreakerStorage``: state,
fail counter, success counter, opened_at), its vocabulary of states and its rule of
which exceptions are the system's fault (``exclude``, ``is_system_error``).
:class:`RedisBreakerStorage` implements that contract over one Redis hash at
``<key_prefix>:breaker:<provider>``, so a plain ``pybreaker.CircuitBreaker`` can use
it too.

pybreaker's own ``CircuitRedisStorage`` is not used because, across processes, it
stamps ``opened_at`` with the local clock truncated to whole seconds (with a 1 s
reset timeout the breaker half-opens up to a second early, and a re-open within the
same second keeps the old stamp), decodes state as bytes only (breaks with
``decode_responses=True``), and never expires its keys. Nor is pybreaker's ``call``:
it holds one lock around the guarded call (threads of a worker would run their LM
calls one at a time), lets every process that sees the timeout elapse through as a
"probe", and its ``call_async`` needs tornado. Here each transition is one Lua
script, atomic across processes and timed by Redis's clock, so exactly one caller
wins the half-open probe, and no lock is held while the guarded call runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import pybreaker
from redis import Redis

from dspyq.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    InputError,
    RateLimitExceededError,
)
from dspyq.resilience.redis_client import redis_errors
from dspyq.settings import get_settings

__all__ = [
    "DEFAULT_EXCLUDED",
    "Admission",
    "BreakerStatus",
    "CircuitBreaker",
    "RedisBreakerStorage",
    "StateListener",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

StateListener = Callable[[str, str, str], None]
"""Called as ``listener(provider, old_state, new_state)`` after a transition."""

Exclusion = type[BaseException] | Callable[[BaseException], bool]

DEFAULT_EXCLUDED: tuple[Exclusion, ...] = (
    # The caller's fault: the provider answered, so it is up.
    BadRequestError,  # includes ContextWindowExceededError
    AuthenticationError,
    InputError,
    # dspyq's own fail-fast refusals say nothing about the provider.
    CircuitOpenError,
    RateLimitExceededError,
)
"""Exceptions that do not count as failures (pybreaker's ``exclude``)."""

_US = 1_000_000

_LUA_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function us(x) return string.format('%d', x) end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
"""

# ARGV: reset_timeout_us, probe lease_us, ttl_ms.
# Returns {verdict, wait_us, old state if this call made a transition else '', failures};
# verdict 0 = refuse, 1 = pass (closed), 2 = pass as the one half-open probe; failures
# is the closed breaker's count of failures since the last success (else 0).
_ADMIT = (
    _LUA_PRELUDE
    + """
if state == 'closed' then
  return {1, 0, '', tonumber(redis.call('HGET', KEYS[1], 'fail_counter') or '0')}
end
local reset = tonumber(ARGV[1])
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  local wait = opened + reset - now
  if wait > 0 then return {0, wait, '', 0} end
  redis.call('HSET', KEYS[1], 'state', 'half-open', 'success_counter', 0,
             'probe_until', us(now + tonumber(ARGV[2])))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {2, 0, 'open', 0}
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if probe_until > now then return {0, math.min(probe_until - now, reset), '', 0} end
-- No probe in flight (the last one was lost): this caller becomes the probe.
redis.call('HSET', KEYS[1], 'probe_until', us(now + tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {2, 0, '', 0}
"""
)

# ARGV: fail_max, probe (0/1), ttl_ms. Returns the old state if the breaker opened, else ''.
# Outcomes of calls admitted while closed are ignored once the breaker left 'closed':
# they describe the provider before it was judged down.
_FAILURE = (
    _LUA_PRELUDE
    + """
if ARGV[2] == '1' then
  if state ~= 'half-open' then return '' end
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', us(now), 'probe_until', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 'half-open'
end
if state ~= 'closed' then return '' end
local failures = redis.call('HINCRBY', KEYS[1], 'fail_counter', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', us(now))
  return 'closed'
end
return ''
"""
)

# ARGV: probe (0/1), ttl_ms. Returns the old state if the breaker closed, else ''.
_SUCCESS = (
    _LUA_PRELUDE
    + """
if ARGV[1] == '1' and state == 'half-open' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'fail_counter', 0, 'success_counter', 1,
             'probe_until', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 'half-open'
end
local failures = redis.call('HGET', KEYS[1], 'fail_counter')
if state == 'closed' and failures and failures ~= '0' then
  redis.call('HSET', KEYS[1], 'fail_counter', 0)
end
return ''
"""
)

# A probe that was cancelled gives its turn back. No ARGV.
_RELEASE = (
    _LUA_PRELUDE
    + """
if state == 'half-open' then redis.call('HSET', KEYS[1], 'probe_until', 0) end
return ''
"""
)

# Returns {state, fail_counter, success_counter, opened_at_us, probe_until_us, now_us}.
_SNAPSHOT = (
    _LUA_PRELUDE
    + """
local h = redis.call('HMGET', KEYS[1], 'fail_counter', 'success_counter', 'opened_at',
                     'probe_until')
return {state, h[1] or '0', h[2] or '0', h[3] or '0', h[4] or '0', us(now)}
"""
)

# pybreaker's opened_at setter: stamp Redis time, whatever the caller's clock says.
_STAMP_OPENED = (
    _LUA_PRELUDE
    + """
redis.call('HSET', KEYS[1], 'opened_at', us(now))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return ''
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Admission:
    """A call let through by the breaker.

    ``probe``: it is the half-open breaker's one probe. ``clean``: the breaker was closed
    with no failures counted, so its success has nothing to record (skipping that
    record saves a Redis round trip on nearly every call; a failure counted by another
    process meanwhile is reset by the next success whose admission sees it).
    """

    probe: bool
    clean: bool


@dataclass(frozen=True)
class _Snapshot:
    state: str
    fail_counter: int
    success_counter: int
    opened_at_us: int
    probe_until_us: int
    now_us: int


class RedisBreakerStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker's storage contract over one Redis hash, plus the atomic transitions.

    ``opened_at`` is always Redis server time; read back, it is shifted onto the local
    clock (local now minus the age Redis reports), so pybreaker's local comparisons
    stay right on machines whose clocks disagree. The hash's TTL is renewed on every
    write and is far longer than a reset timeout, so only idle breakers vanish (and a
    missing breaker is a closed one).
    """

    def __init__(self, redis: Redis, key: str, ttl: float = 86_400.0) -> None:
        super().__init__("redis")
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl * 1000)
        self._admit = redis.register_script(_ADMIT)
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)
        self._release = redis.register_script(_RELEASE)
        self._snapshot = redis.register_script(_SNAPSHOT)
        self._stamp_opened = redis.register_script(_STAMP_OPENED)

    # --- atomic operations used by dspyq's CircuitBreaker ----------------------------

    def admit(self, reset_timeout: float, probe_lease: float) -> tuple[int, float, str, int]:
        """(verdict, seconds to wait, old state if this call moved open -> half-open,
        failures counted by the closed breaker since its last success)."""
        with redis_errors("circuit breaker admit", breaker=self.key):
            reply = self._admit(keys=[self.key], args=self._admit_args(reset_timeout, probe_lease))
        return self.admission(reply)

    def queue_admit(self, pipe: Any, reset_timeout: float, probe_lease: float) -> None:
        """Add :meth:`admit` to the Redis pipeline ``pipe``; read its reply with
        :meth:`admission`. The caller executes the pipeline (see :meth:`load_scripts`)."""
        pipe.evalsha(self._admit.sha, 1, self.key, *self._admit_args(reset_timeout, probe_lease))

    def load_scripts(self) -> None:
        """Make sure Redis knows the admit script (after a restart or a flush)."""
        with redis_errors("circuit breaker script load", breaker=self.key):
            self.redis.script_load(self._admit.script)

    @staticmethod
    def admission(reply: Any) -> tuple[int, float, str, int]:
        """What a reply of the admit script says, as :meth:`admit` returns it."""
        verdict, wait_us, old, failures = reply
        return int(verdict), int(wait_us) / _US, _text(old), int(failures)

    def _admit_args(self, reset_timeout: float, probe_lease: float) -> list[int]:
        return [int(reset_timeout * _US), int(probe_lease * _US), self.ttl_ms]

    def record_failure(self, fail_max: int, probe: bool) -> str:
        """Count a failure; the old state if it opened the breaker, else ''."""
        with redis_errors("circuit breaker record_failure", breaker=self.key):
            old = self._failure(keys=[self.key], args=[fail_max, int(probe), self.ttl_ms])
        return _text(old)

    def record_success(self, probe: bool) -> str:
        """Record a success; the old state if it closed the breaker, else ''."""
        with redis_errors("circuit breaker record_success", breaker=self.key):
            old = self._success(keys=[self.key], args=[int(probe), self.ttl_ms])
        return _text(old)

    def release_probe(self) -> None:
        """Let the next caller probe (the current probe was cancelled)."""
        with redis_errors("circuit breaker release_probe", breaker=self.key):
            self._release(keys=[self.key])

    def snapshot(self) -> _Snapshot:
        with redis_errors("circuit breaker snapshot", breaker=self.key):
            raw = [_text(v) for v in self._snapshot(keys=[self.key])]
        return _Snapshot(raw[0], int(raw[1]), int(raw[2]), int(raw[3]), int(raw[4]), int(raw[5]))

    def clear(self) -> None:
        """Forget everything: the breaker is closed with no failures."""
        with redis_errors("circuit breaker reset", breaker=self.key):
            self.redis.delete(self.key)

    # --- pybreaker.CircuitBreakerStorage ---------------------------------------------

    def _set(self, field: str, value: str | int) -> None:
        with redis_errors("circuit breaker write", breaker=self.key):
            pipe = self.redis.pipeline()
            pipe.hset(self.key, field, value)
            pipe.pexpire(self.key, self.ttl_ms)
            pipe.execute()

    def _incr(self, field: str) -> None:
        with redis_errors("circuit breaker write", breaker=self.key):
            pipe = self.redis.pipeline()
            pipe.hincrby(self.key, field, 1)
            pipe.pexpire(self.key, self.ttl_ms)
            pipe.execute()

    @property
    def state(self) -> str:
        return self.snapshot().state

    @state.setter
    def state(self, state: str) -> None:
        self._set("state", str(state))

    def increment_counter(self) -> None:
        self._incr("fail_counter")

    def reset_counter(self) -> None:
        self._set("fail_counter", 0)

    def increment_success_counter(self) -> None:
        self._incr("success_counter")

    def reset_success_counter(self) -> None:
        self._set("success_counter", 0)

    @property
    def counter(self) -> int:
        return self.snapshot().fail_counter

    @property
    def success_counter(self) -> int:
        return self.snapshot().success_counter

    @property
    def opened_at(self) -> datetime | None:
        snap = self.snapshot()
        if not snap.opened_at_us:
            return None
        age = timedelta(microseconds=snap.now_us - snap.opened_at_us)
        return datetime.now(UTC) - age

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        with redis_errors("circuit breaker write", breaker=self.key):
            self._stamp_opened(keys=[self.key], args=[self.ttl_ms])


@dataclass(frozen=True)
class BreakerStatus:
    """A breaker as a dashboard shows it."""

    provider: str
    state: str
    fail_counter: int
    fail_max: int
    retry_after: float
    """Seconds until the breaker lets a probe through (0.0 unless open)."""


class CircuitBreaker:
    """Fails fast on a provider that keeps failing, for every process sharing Redis.

    Closed: calls pass; ``fail_max`` consecutive failures (counted across processes)
    open it. Open: calls raise CircuitOpenError without running, until
    ``reset_timeout`` seconds have passed. Half-open: exactly one caller runs as the
    probe; its success closes the breaker, its failure re-opens it. A probe that
    never reports (its process died) loses its turn after ``probe_timeout`` seconds
    (default: the larger of ``reset_timeout`` and 30 s).
    """

    def __init__(
        self,
        redis: Redis,
        provider: str,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        key_prefix: str = "dspyq",
        exclude: Iterable[Exclusion] | None = None,
        listeners: Iterable[StateListener] = (),
        probe_timeout: float | None = None,
    ) -> None:
        self.provider = provider
        self.storage = RedisBreakerStorage(
            redis, f"{key_prefix}:breaker:{provider}", ttl=max(86_400.0, 2 * reset_timeout)
        )
        # pybreaker holds the thresholds and decides what counts as a failure.
        self._policy = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=list(DEFAULT_EXCLUDED if exclude is None else exclude),
            state_storage=self.storage,
            name=provider,
        )
        self.probe_timeout = (
            probe_timeout if probe_timeout is not None else max(reset_timeout, 30.0)
        )
        self._listeners: list[StateListener] = list(listeners)

    @classmethod
    def for_provider(
        cls, redis: Redis, provider: str, key_prefix: str = "dspyq", **kwargs: Any
    ) -> CircuitBreaker:
        """The breaker of a provider with ``fail_max`` and ``reset_timeout`` from settings."""
        conf = get_settings().provider(provider)
        return cls(
            redis,
            provider,
            fail_max=conf.breaker_fail_max,
            reset_timeout=conf.breaker_reset_timeout,
            key_prefix=key_prefix,
            **kwargs,
        )

    @property
    def fail_max(self) -> int:
        return self._policy.fail_max

    @property
    def reset_timeout(self) -> float:
        return float(self._policy.reset_timeout)

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(provider, old, new)`` on each transition this process makes.

        Each transition is made by exactly one process, so across a pool every
        change is reported once.
        """
        self._listeners.append(listener)

    def status(self) -> BreakerStatus:
        """State, failures and time to half-open, as of Redis's clock now."""
        snap = self.storage.snapshot()
        state, wait = snap.state, 0.0
        if state == pybreaker.STATE_OPEN:
            wait = max(0.0, (snap.opened_at_us - snap.now_us) / _US + self.reset_timeout)
            if wait == 0.0:
                state = pybreaker.STATE_HALF_OPEN  # the next call will be the probe
        return BreakerStatus(self.provider, state, snap.fail_counter, self.fail_max, wait)

    @property
    def state(self) -> str:
        """ "closed", "open" or "half-open" (an open breaker whose timeout elapsed is half-open)."""
        return self.status().state

    def reset(self) -> None:
        """Close the breaker and forget its failures (an operator's override)."""
        old = self.storage.snapshot().state
        self.storage.clear()
        if old != pybreaker.STATE_CLOSED:
            self._notify(old, pybreaker.STATE_CLOSED)

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` unless the breaker is open; record the outcome for every process."""
        return self.call_admitted(self._admit(), fn, *args, **kwargs)

    def admitted(self, admission: tuple[int, float, str, int]) -> Admission:
        """Judge a reply of :meth:`RedisBreakerStorage.admit` (fetched by the caller, e.g.
        in a pipeline with the rate limiter): raises CircuitOpenError while open."""
        verdict, wait, old, failures = admission
        if old:
            self._notify(old, pybreaker.STATE_HALF_OPEN)
        if verdict == 0:
            raise CircuitOpenError(
                f"circuit breaker of provider {self.provider!r} is open after repeated "
                f"failures; calls fail fast for {wait:.2f}s more",
                context={"provider": self.provider, "fail_max": self.fail_max},
                retry_after=wait,
            )
        return Admission(probe=verdict == 2, clean=verdict == 1 and failures == 0)

    def give_back(self, admission: Admission) -> None:
        """An admitted call that will not run: a probe gives its turn to the next caller."""
        if admission.probe:
            self._release_probe()

    def call_admitted(
        self, admission: Admission, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn``, already admitted (see :meth:`admitted`); record its outcome."""
        probe, clean = admission.probe, admission.clean
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._record_error(exc, probe)
            raise
        except BaseException:
            # Interrupted, not failed: say nothing about the provider.
            if probe:
                self._release_probe()
            raise
        if not clean:
            self._record_success(probe)
        return result

    async def call_async(
        self, coro_fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """:meth:`call` for coroutine functions; Redis calls run off the event loop."""
        admission = await asyncio.to_thread(self._admit)
        probe, clean = admission.probe, admission.clean
        try:
            result = await coro_fn(*args, **kwargs)
        except Exception as exc:
            await asyncio.to_thread(self._record_error, exc, probe)
            raise
        except BaseException:
            # Cancelled: release synchronously, a second cancellation cannot skip it.
            if probe:
                self._release_probe()
            raise
        if not clean:
            await asyncio.to_thread(self._record_success, probe)
        return result

    # --- internals -------------------------------------------------------------------

    def _admit(self) -> Admission:
        """Ask Redis whether a call may run now (see :class:`Admission`)."""
        return self.admitted(self.storage.admit(self.reset_timeout, self.probe_timeout))

    def _record_error(self, exc: Exception, probe: bool) -> None:
        if not self._policy.is_system_error(exc):
            self._record_success(probe)
            return
        try:
            old = self.storage.record_failure(self.fail_max, probe)
        except Exception:
            # The caller gets the provider's error; this one is logged, not lost.
            logger.exception("could not record a failure of provider %r", self.provider)
            return
        if old:
            self._notify(old, pybreaker.STATE_OPEN)

    def _record_success(self, probe: bool) -> None:
        try:
            old = self.storage.record_success(probe)
        except Exception:
            logger.exception("could not record a success of provider %r", self.provider)
            return
        if old:
            self._notify(old, pybreaker.STATE_CLOSED)

    def _release_probe(self) -> None:
        try:
            self.storage.release_probe()
        except Exception:
            logger.exception("could not release the probe of provider %r", self.provider)

    def _notify(self, old: str, new: str) -> None:
        logger.info("circuit breaker %r: %s -> %s", self.provider, old, new)
        for listener in self._listeners:
            try:
                listener(self.provider, old, new)
            except Exception:
                logger.exception("circuit breaker listener %r failed", listener)
