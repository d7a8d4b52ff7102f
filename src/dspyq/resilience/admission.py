"""The one Redis script an attempt passes: the circuit breaker first, then the limiter.

The breaker is asked first so that an open breaker costs nothing: no request of the
limiter's budget is spent, and a job fails with CircuitOpenError at once instead of
waiting for a limiter slot only to learn then that the provider is down. Only when the
breaker lets the call through is the limiter asked, in the same script (atomic, one
round trip); if the limiter refuses, a probe's turn taken by this call goes back to the
half-open breaker before the script ends, so no other caller ever sees it held by a call
that is waiting.

The script is the breaker's admit script and the limiter's acquire script, each run as a
Lua function over its own keys, so each keeps one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis

from dspyq.resilience.breaker import CircuitBreaker
from dspyq.resilience.breaker_storage import ADMIT, AdmitReply, RedisBreakerStorage
from dspyq.resilience.ratelimit import Decision, RateLimiter
from dspyq.resilience.ratelimit_scripts import ACQUIRE

__all__ = ["GATE_ADMIT", "GateReply", "GateScript"]


def _as_function(name: str, body: str) -> str:
    # KEYS and ARGV as parameters shadow the script's own: each part sees only its own.
    return f"local function {name}(KEYS, ARGV)\n{body}\nend\n"


# KEYS: breaker hash, limiter requests log, tokens log, meta hash.
# ARGV: the breaker's admit arguments (3), then the limiter's acquire arguments (6).
# Returns the breaker's reply (5 items), then the limiter's (3 items; {-1, 0, 0} when the
# breaker refused and the limiter was not asked).
GATE_ADMIT = (
    _as_function("breaker_admit", ADMIT)
    + _as_function("limiter_acquire", ACQUIRE)
    + """
local b = breaker_admit({KEYS[1]}, {ARGV[1], ARGV[2], ARGV[3]})
if tonumber(b[1]) == 0 then return {b[1], b[2], b[3], b[4], b[5], -1, 0, 0} end
local l = limiter_acquire({KEYS[2], KEYS[3], KEYS[4]},
                          {ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]})
if tonumber(l[1]) > 0 and tonumber(b[1]) == 2 then
  -- Refused by the limiter: the probe's turn goes back at once.
  redis.call('HSET', KEYS[1], 'probe_until', 0, 'probe', '')
  b[5] = ''
end
return {b[1], b[2], b[3], b[4], b[5], l[1], l[2], l[3]}
"""
)


@dataclass(frozen=True)
class GateReply:
    """What the script said: the breaker's reply and, if it was asked, the limiter's."""

    breaker: AdmitReply
    limiter: Decision | None
    """None when the breaker refused (the limiter was not asked)."""

    @property
    def refused_by_breaker(self) -> bool:
        return self.breaker[0] == 0


class GateScript:
    """The admission script registered on one Redis client."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(GATE_ADMIT)

    def queue(self, pipe: Any, breaker: CircuitBreaker, limiter: RateLimiter, tokens: int) -> None:
        """Add one admission to the pipeline ``pipe``; read its reply with :meth:`reply`."""
        limiter_keys, limiter_args = limiter.acquire_call(tokens)
        breaker_args = breaker.storage.admit_args(breaker.reset_timeout, breaker.probe_timeout)
        keys = [breaker.storage.key, *limiter_keys]
        pipe.evalsha(self._script.sha, len(keys), *keys, *breaker_args, *limiter_args)

    def load(self) -> None:
        """Make sure Redis knows the script (after a restart or a flush)."""
        self.redis.script_load(self._script.script)

    @staticmethod
    def reply(raw: Any, tokens: int) -> GateReply:
        breaker = RedisBreakerStorage.admission(raw[:5])
        if breaker[0] == 0:
            return GateReply(breaker, None)
        return GateReply(breaker, RateLimiter.decision(raw[5:], tokens))
