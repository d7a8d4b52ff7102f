"""Which of several watchers judges the windows: the holder of a lock in Redis.

Several ``dspyq watch`` processes may run (one per host, for availability); only the
leader raises alerts and judges canaries, so each alert is raised once per window.
The lock is ``<prefix>:watch:leader`` holding the leader's id, with a time to live it
renews at every look: a leader that dies is replaced within ``ttl`` seconds. (The
alerts' unique key in SQL is the second guard, should two ever judge one window.)
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from dspyq.resilience.redis_client import redis_errors

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["LeaderLock"]

# Renew only a lock that is still ours; take it when free.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderLock:
    """The watchers' leader lock: :meth:`acquire` takes or renews it, :meth:`release` frees it."""

    def __init__(self, redis: Redis, key_prefix: str, ttl: float) -> None:
        self.redis = redis
        self.key = f"{key_prefix}:watch:leader"
        self.ttl = ttl
        self.id = uuid.uuid4().hex

    def acquire(self) -> bool:
        """True if this watcher leads now (the lock was free or already its own)."""
        with redis_errors("take the watchers' leader lock"):
            held = self.redis.eval(_ACQUIRE, 1, self.key, self.id, int(self.ttl * 1000))
        return bool(held)

    def release(self) -> None:
        with redis_errors("release the watchers' leader lock"):
            self.redis.eval(_RELEASE, 1, self.key, self.id)
