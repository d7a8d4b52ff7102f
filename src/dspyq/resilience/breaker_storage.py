"""The Redis storage of :class:`~dspyq.resilience.breaker.CircuitBreaker`: one hash per
provider, and each transition one Lua script.

:class:`RedisBreakerStorage` implements pybreaker's storage contract
(``CircuitBreakerStorage``: state, fail counter, success counter, opened_at) over one
Redis hash at ``<key_prefix>:breaker:<provider>``, so a plain
``pybreaker.CircuitBreaker`` can use it too. pybreaker's own ``CircuitRedisStorage`` is
not used because, across processes, it stamps ``opened_at`` with the local clock
truncated to whole seconds (with a 1 s reset timeout the breaker half-opens up to a
second early, and a re-open within the same second keeps the old stamp), decodes state
as bytes only (breaks with ``decode_responses=True``), and never expires its keys. The
scripts are atomic across processes and timed by Redis's clock, so exactly one caller
wins the half-open probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pybreaker
from redis import Redis

from dspyq.resilience.redis_client import redis_errors

__all__ = ["ADMIT", "AdmitReply", "RedisBreakerStorage"]

_US = 1_000_000

_LUA_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function us(x) return string.format('%d', x) end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
"""

# ARGV: reset_timeout_us, probe lease_us, ttl_ms.
# Returns {verdict, wait_us, old state if this call made a transition else '', failures,
# probe token}; verdict 0 = refuse, 1 = pass (closed), 2 = pass as the one half-open
# probe; failures is the closed breaker's count of failures since the last success (else
# 0). The probe holds the half-open breaker like a lock with a TTL: field 'probe' is its
# token (only its holder's outcome counts), 'probe_until' the end of its lease.
ADMIT = (
    _LUA_PRELUDE
    + """
if state == 'closed' then
  return {1, 0, '', tonumber(redis.call('HGET', KEYS[1], 'fail_counter') or '0'), ''}
end
local reset = tonumber(ARGV[1])
local function take_probe(old)
  local token = us(now) .. ':' .. redis.call('HINCRBY', KEYS[1], 'probe_seq', 1)
  redis.call('HSET', KEYS[1], 'state', 'half-open', 'probe', token,
             'probe_until', us(now + tonumber(ARGV[2])))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {2, 0, old, 0, token}
end
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  local wait = opened + reset - now
  if wait > 0 then return {0, wait, '', 0, ''} end
  redis.call('HSET', KEYS[1], 'success_counter', 0)
  return take_probe('open')
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if probe_until > now then return {0, math.min(probe_until - now, reset), '', 0, ''} end
-- No probe in flight (the last one gave its turn back or its lease ran out): this
-- caller becomes the probe.
return take_probe('')
"""
)

# ARGV: fail_max, probe token ('' for a call admitted while closed), ttl_ms. Returns the
# old state if the breaker opened, else ''. Outcomes of calls admitted while closed are
# ignored once the breaker left 'closed' (they describe the provider before it was
# judged down), and so are those of a probe whose lease another probe has taken.
_FAILURE = (
    _LUA_PRELUDE
    + """
if ARGV[2] ~= '' then
  if state ~= 'half-open' or redis.call('HGET', KEYS[1], 'probe') ~= ARGV[2] then
    return ''
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', us(now), 'probe_until', 0,
             'probe', '')
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

# ARGV: probe token ('' if not the probe), ttl_ms. Returns the old state if the breaker
# closed, else ''.
_SUCCESS = (
    _LUA_PRELUDE
    + """
if ARGV[1] ~= '' and state == 'half-open'
   and redis.call('HGET', KEYS[1], 'probe') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'fail_counter', 0, 'success_counter', 1,
             'probe_until', 0, 'probe', '')
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

# A probe that will not run (cancelled, or refused by the limiter) gives its turn back.
# ARGV: its token.
_RELEASE = (
    _LUA_PRELUDE
    + """
if state == 'half-open' and redis.call('HGET', KEYS[1], 'probe') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'probe_until', 0, 'probe', '')
end
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


AdmitReply = tuple[int, float, str, int, str]
"""A reply of the admit script: (verdict, wait, old state, failures, probe token)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
        self._admit = redis.register_script(ADMIT)
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)
        self._release = redis.register_script(_RELEASE)
        self._snapshot = redis.register_script(_SNAPSHOT)
        self._stamp_opened = redis.register_script(_STAMP_OPENED)

    # --- atomic operations used by dspyq's CircuitBreaker ----------------------------

    def admit(self, reset_timeout: float, probe_lease: float) -> AdmitReply:
        """(verdict, seconds to wait, old state if this call moved open -> half-open,
        failures counted by the closed breaker since its last success, probe token)."""
        with redis_errors("circuit breaker admit", breaker=self.key):
            reply = self._admit(keys=[self.key], args=self.admit_args(reset_timeout, probe_lease))
        return self.admission(reply)

    def load_scripts(self) -> None:
        """Make sure Redis knows the admit script (after a restart or a flush)."""
        with redis_errors("circuit breaker script load", breaker=self.key):
            self.redis.script_load(self._admit.script)

    @staticmethod
    def admission(reply: Any) -> AdmitReply:
        """What a reply of the admit script says, as :meth:`admit` returns it."""
        verdict, wait_us, old, failures, token = reply
        return int(verdict), int(wait_us) / _US, _text(old), int(failures), _text(token)

    def admit_args(self, reset_timeout: float, probe_lease: float) -> list[int]:
        return [int(reset_timeout * _US), int(probe_lease * _US), self.ttl_ms]

    def record_failure(self, fail_max: int, probe: str) -> str:
        """Count a failure (``probe``: the probe's token, '' for a call admitted while
        closed); the old state if it opened the breaker, else ''."""
        with redis_errors("circuit breaker record_failure", breaker=self.key):
            old = self._failure(keys=[self.key], args=[fail_max, probe, self.ttl_ms])
        return _text(old)

    def record_success(self, probe: str) -> str:
        """Record a success (``probe`` as for :meth:`record_failure`); the old state if
        it closed the breaker, else ''."""
        with redis_errors("circuit breaker record_success", breaker=self.key):
            old = self._success(keys=[self.key], args=[probe, self.ttl_ms])
        return _text(old)

    def release_probe(self, probe: str) -> None:
        """Let the next caller probe (the probe of token ``probe`` will not run)."""
        with redis_errors("circuit breaker release_probe", breaker=self.key):
            self._release(keys=[self.key], args=[probe])

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
