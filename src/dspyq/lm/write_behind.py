"""A cache layer whose writes are gathered and stored in batches by a background thread.

The SQL layer (L3) is the slowest of a worker's caches: one write transaction per LM
call cost about a tenth of a worker's CPU. Its writes are not on any caller's critical
path (L1 and L2 already hold the answer), so :class:`WriteBehindCache` queues them and
a daemon thread stores whatever has gathered in one transaction every
``flush_interval`` seconds. Reads see queued entries at once.

A write still queued when the process dies is lost; for a cache that only means one
more LM call later. :meth:`WriteBehindCache.close` stores what is queued.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from dspyq.lm.cache_peek import CachePeek
from dspyq.lm.request import LMResponse

__all__ = ["BatchWritableCache", "WriteBehindCache"]

logger = logging.getLogger(__name__)


class BatchWritableCache(Protocol):
    """A cache layer that can store many entries at once."""

    ttl: float | None

    def get(self, key: str) -> LMResponse | None: ...

    def put_many(self, entries: list[tuple[str, LMResponse]]) -> None: ...

    def delete(self, key: str) -> bool: ...


class WriteBehindCache:
    """Reads go to ``layer`` (after the queued writes); writes are stored in batches."""

    def __init__(
        self, layer: BatchWritableCache, *, flush_interval: float = 0.05, max_queued: int = 10_000
    ) -> None:
        self.layer = layer
        self.flush_interval = flush_interval
        self.max_queued = max_queued
        self._queued: dict[str, LMResponse] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="dspyq-cache-writer", daemon=True)
        self._thread.start()

    def get(self, key: str) -> LMResponse | None:
        with self._lock:
            queued = self._queued.get(key)
        return queued if queued is not None else self.layer.get(key)

    def peek(self, key: str) -> LMResponse | CachePeek | None:
        """A queued answer, or the wrapped layer's read for a gate to make (see
        :mod:`dspyq.lm.cache_peek`); None if the layer cannot hand its read over."""
        with self._lock:
            queued = self._queued.get(key)
        if queued is not None:
            return queued
        peek = getattr(self.layer, "peek", None)
        return None if peek is None else peek(key)

    def skips_read(self, key: str) -> bool:
        """Whether a read of ``key`` would miss without asking anyone: nothing queued
        under it, and the wrapped layer says it skips its reads now (see
        :meth:`LayeredCache.get_or_peek`)."""
        with self._lock:
            if key in self._queued:
                return False
        skips = getattr(self.layer, "skips_reads", None)
        return bool(skips()) if skips is not None else False

    def get_stale(self, key: str, max_age: float | None = None) -> LMResponse | None:
        """The wrapped layer's answer past its TTL (queued entries are fresh: ``get`` has them)."""
        reader = getattr(self.layer, "get_stale", None)
        return None if reader is None else reader(key, max_age)

    def put(self, key: str, value: LMResponse) -> None:
        with self._lock:
            self._queued[key] = value
            full = len(self._queued) >= self.max_queued
        if full or self._closed:
            self.flush()

    def flush(self) -> None:
        """Store every queued entry now."""
        with self._lock:
            batch, self._queued = list(self._queued.items()), {}
        if not batch:
            return
        try:
            self.layer.put_many(batch)
        except Exception:
            # Only a cache: the entries are dropped, the calls they saved happen again.
            logger.warning("could not store %d cache entries; dropped", len(batch), exc_info=True)

    def close(self) -> None:
        """Stop the writer thread after storing what is queued (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self.flush()

    def delete(self, key: str) -> bool:
        """Forget ``key``, queued or stored; returns whether it was cached."""
        with self._lock:
            queued = self._queued.pop(key, None) is not None
        delete = getattr(self.layer, "delete", None)
        stored = bool(delete(key)) if callable(delete) else False
        return queued or stored

    def __repr__(self) -> str:
        return f"WriteBehindCache({self.layer!r})"
