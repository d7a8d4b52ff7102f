"""The L2 cache: LM responses in Redis, shared by every worker of a pool.

Each response is stored as its JSON at ``<key_prefix>:lmcache:<key>`` with a TTL. The
cache receives its Redis client (the seam) and never builds one; only the worker
runtime imports this module, so ``import dspyq.lm`` never needs Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from dspyq.lm.cache_peek import CachePeek
from dspyq.lm.request import LMResponse
from dspyq.resilience.redis_client import redis_errors

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["RedisCache"]

logger = logging.getLogger(__name__)

_SCAN_BATCH = 500


class RedisCache:
    """LM responses in Redis under ``key_prefix``, each kept ``ttl`` seconds (None: no expiry).

    Redis failures raise dspyq's Redis errors (a :class:`~dspyq.lm.layered_cache.LayeredCache`
    turns them into misses); an entry that no longer reads as a response is a miss and
    is deleted.
    """

    def __init__(
        self,
        redis: Redis,
        ttl: float | None = 3600.0,
        key_prefix: str = "dspyq",
        *,
        on_write_failure: Callable[[], None] | None = None,
    ) -> None:
        if ttl is not None and ttl <= 0:
            ttl = None
        self.redis = redis
        self.on_write_failure = on_write_failure
        self.ttl = ttl
        self.key_prefix = key_prefix
        self._namespace = f"{key_prefix}:lmcache:"

    def redis_key(self, key: str) -> str:
        """Where the response cached under ``key`` lives in Redis."""
        return self._namespace + key

    def get(self, key: str) -> LMResponse | None:
        name = self.redis_key(key)
        with redis_errors("LM cache read", cache_key=name):
            raw = self.redis.get(name)
        return None if raw is None else self._read(key, raw)

    def peek(self, key: str) -> CachePeek:
        """The read of ``key`` for a provider gate on this Redis to make (see
        :mod:`dspyq.lm.cache_peek`)."""
        return CachePeek(self.redis, self.redis_key(key), lambda raw: self._read(key, raw))

    def _read(self, key: str, raw: bytes | str) -> LMResponse | None:
        try:
            return LMResponse.model_validate_json(raw)
        except ValidationError:
            logger.warning("dropping unreadable LM cache entry %s", self.redis_key(key))
            self.delete(key)
            return None

    def put(self, key: str, value: LMResponse) -> None:
        self.put_many([(key, value)])

    def put_many(self, entries: list[tuple[str, LMResponse]]) -> None:
        """Cache every ``(key, value)`` of ``entries`` in one round trip."""
        if not entries:
            return
        px = None if self.ttl is None else max(1, round(self.ttl * 1000))
        try:
            with redis_errors("LM cache write", cache_keys=len(entries)):
                if len(entries) == 1:  # one answer, the usual case: no pipeline to build
                    key, value = entries[0]
                    self.redis.set(self.redis_key(key), value.model_dump_json(), px=px)
                    return
                with self.redis.pipeline(transaction=False) as pipe:
                    for key, value in entries:
                        pipe.set(self.redis_key(key), value.model_dump_json(), px=px)
                    pipe.execute()
        except Exception:
            if self.on_write_failure is not None:
                self.on_write_failure()  # the entries may now be in the SQL cache only
            raise

    def delete(self, key: str) -> bool:
        """Forget ``key``; returns whether it was cached."""
        name = self.redis_key(key)
        with redis_errors("LM cache delete", cache_key=name):
            return bool(self.redis.delete(name))

    def clear(self) -> None:
        """Delete every response under this cache's prefix (not the rest of Redis)."""
        with redis_errors("LM cache clear", cache_prefix=self._namespace):
            batch: list[str | bytes] = []
            for name in self.redis.scan_iter(match=self._namespace + "*", count=_SCAN_BATCH):
                batch.append(name)
                if len(batch) >= _SCAN_BATCH:
                    self.redis.delete(*batch)
                    batch.clear()
            if batch:
                self.redis.delete(*batch)

    def __repr__(self) -> str:
        return f"RedisCache(prefix={self._namespace!r}, ttl={self.ttl!r})"
