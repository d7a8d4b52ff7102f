"""When a miss in the Redis cache (L2) is also a miss in the SQL cache (L3).

Every answer is written to L2 and L3 together, with the same TTL, so as long as Redis
keeps what it is given, L3 holds nothing that L2 lacks and an L2 miss needs no SQL
read: on a workload of new questions that read was a tenth of a worker's CPU per LM
call, and every worker of a fleet sent it to the one database.

Redis does not always keep what it is given: it restarts (empty, or from an older
snapshot), fails over to a replica, or evicts keys under ``maxmemory``; and an L2 write
can fail while the L3 write succeeds. :class:`L2Coverage` therefore keeps a marker in
Redis, ``<prefix>:lmcache-coverage``, holding the *horizon*: the time after which every
live L3 entry was written while this Redis kept everything. It is set when missing to
the latest expiry found in L3 (plus a margin for writes in flight), together with the
Redis server's run id and eviction count; when either changes, or a process could not
write to L2, the marker is replaced and L3 is read again until the new horizon. With
no TTL (entries that never expire) there is no horizon and L3 is always read.

Each process checks the marker at most once a second, so after Redis loses data a
process may skip L3 for up to a second: at worst an answer cached in SQL is not found
and the LM is called again. The cache only ever saves calls; it never answers wrongly.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["L2Coverage"]

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
"""How often a process reads the marker (and Redis's run id and eviction count)."""

MARGIN_S = 5.0
"""Added to the latest L3 expiry: L3 writes in flight when the marker is set."""

ServerState = tuple[str, int]
"""Redis's run id and evicted-key count: when either changes, L2 may have lost entries."""


def redis_server_state(redis: Redis) -> ServerState:
    """The run id and eviction count of the Redis server behind ``redis``."""
    info: dict[str, Any] = redis.info()
    return str(info["run_id"]), int(info.get("evicted_keys", 0))


class L2Coverage:
    """Tells whether an L2 miss is an L3 miss, from the marker in ``redis``.

    ``latest_expiry()`` is the latest ``expires_at`` of the live L3 entries as a Unix
    time (None: there are none; ``math.inf``: some never expire). ``server_state`` and
    ``clock`` are seams (a server without ``INFO``, a test's own time).
    """

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        latest_expiry: Callable[[], float | None],
        *,
        server_state: Callable[[], ServerState] | None = None,
        check_every: float = CHECK_EVERY_S,
        margin: float = MARGIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.marker = f"{key_prefix}:lmcache-coverage"
        self._latest_expiry = latest_expiry
        self._server_state = server_state or (lambda: redis_server_state(redis))
        self.check_every = check_every
        self.margin = margin
        self._clock = clock
        self._horizon = math.inf  # until the marker is read: read L3
        self._checked = -math.inf
        self._lost_writes = False
        self._checking = threading.Lock()

    def covers(self) -> bool:
        """True if L2 holds every live L3 entry now (an L2 miss needs no L3 read)."""
        now = self._clock()
        if now - self._checked >= self.check_every and self._checking.acquire(blocking=False):
            try:
                self._horizon = self._read_horizon(now)
            except Exception:
                logger.warning("could not read the L2 coverage marker; reading L3", exc_info=True)
                self._horizon = math.inf
            finally:
                self._checked = now
                self._checking.release()
        return now >= self._horizon

    def lost_writes(self) -> None:
        """An L2 write failed (its entries may reach L3 only): replace the marker."""
        self._lost_writes = True
        self._checked = -math.inf
        self._horizon = math.inf

    def _read_horizon(self, now: float) -> float:
        if self._lost_writes:
            self.redis.delete(self.marker)
            self._lost_writes = False
        run_id, evicted = self._server_state()
        raw = self.redis.get(self.marker)
        if raw is not None:
            horizon, marked_run, marked_evicted = _parse(raw)
            if (marked_run, marked_evicted) == (run_id, evicted):
                return horizon
            logger.info("Redis restarted or evicted keys: reading the SQL cache again for a while")
            self.redis.delete(self.marker)
        latest = self._latest_expiry()
        # The margin is for L3 writes already under way, whose answers expire about when
        # the latest one does; with nothing live in L3 there is nothing to wait for.
        horizon = now if latest is None else latest + self.margin
        if not self.redis.set(self.marker, f"{horizon!r} {run_id} {evicted}", nx=True):
            return math.inf  # another process set it at the same moment: read it next time
        return horizon


def _parse(raw: bytes | str) -> tuple[float, str, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    horizon, run_id, evicted = text.split()
    return float(horizon), run_id, int(evicted)
