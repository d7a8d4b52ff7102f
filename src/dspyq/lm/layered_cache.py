"""Cache layers stacked into one cache: ``LayeredCache([l1, l2, l3])``.

Reads go down the layers until one answers; the answer is then copied into every layer
above it, so the next read is served from the fastest one. Writes go to every layer.
In a worker the layers are the in-process LRU (L1), Redis shared by the pool (L2)
and SQL shared by everyone and kept across restarts (L3).

A layer that fails (Redis down, database locked) is logged and skipped: a read from it
is a miss, a write to it is dropped. The cache only ever saves calls; it never fails one.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence

from dspyq.lm.cache import Cache
from dspyq.lm.cache_peek import CachePeek
from dspyq.lm.request import LMResponse

__all__ = ["LayeredCache"]

logger = logging.getLogger(__name__)


class LayeredCache:
    """Read-through over ``layers`` (fastest first); writes go to all of them.

    ``hits[i]`` counts reads answered by layer ``i``; ``misses`` counts reads no layer
    could answer.
    """

    def __init__(self, layers: Sequence[Cache]) -> None:
        if not layers:
            raise ValueError("a LayeredCache needs at least one layer")
        self.layers: tuple[Cache, ...] = tuple(layers)
        self.hits = [0] * len(self.layers)
        self.misses = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> LMResponse | None:
        for depth, layer in enumerate(self.layers):
            value = self._read(depth, layer, key)
            if value is not None:
                self._found(depth, key, value)
                return value
        with self._lock:
            self.misses += 1
        return None

    @staticmethod
    def _read(depth: int, layer: Cache, key: str) -> LMResponse | None:
        try:
            return layer.get(key)
        except Exception:
            logger.warning(
                "cache layer %d (%r) failed to read; skipped", depth, layer, exc_info=True
            )
            return None

    def _found(self, depth: int, key: str, value: LMResponse) -> None:
        """Count a hit in layer ``depth`` and copy it into every layer above."""
        with self._lock:
            self.hits[depth] += 1
        for upper in self.layers[:depth]:
            self._put(upper, key, value)

    def get_or_peek(
        self, key: str, can_peek: Callable[[CachePeek], bool]
    ) -> tuple[LMResponse | None, CachePeek | None]:
        """As :meth:`get`, except that a layer that can hand its read over (``peek``)
        does so when every layer below it would skip its read anyway: the answer, or
        the read for the caller's gate to make (if ``can_peek`` accepts it; see
        :mod:`dspyq.lm.cache_peek`). A read made that way and found is counted and
        copied to the layers above like any other hit."""
        for depth, layer in enumerate(self.layers):
            peek = getattr(layer, "peek", None)
            lower = self.layers[depth + 1 :]
            if peek is not None and all(_skips_read(below, key) for below in lower):
                try:
                    found = peek(key)
                except Exception:
                    logger.warning(
                        "cache layer %d (%r) failed to read; skipped", depth, layer, exc_info=True
                    )
                    found = None
                if isinstance(found, LMResponse):
                    self._found(depth, key, found)
                    return found, None
                if isinstance(found, CachePeek) and can_peek(found):
                    found.on_hit = functools.partial(self._peeked, depth, key)
                    with self._lock:
                        self.misses += 1  # until the gate finds it
                    return None, found
            value = self._read(depth, layer, key)
            if value is not None:
                self._found(depth, key, value)
                return value, None
        with self._lock:
            self.misses += 1
        return None, None

    def _peeked(self, depth: int, key: str, value: LMResponse) -> None:
        with self._lock:
            self.misses -= 1
        self._found(depth, key, value)

    def get_stale(self, key: str, max_age: float | None = None) -> LMResponse | None:
        """An answer for ``key`` even past its TTL (``max_age``: at most that long past).

        Asks each layer that can tell (a ``get_stale`` method); the answer is not copied
        upwards, where it would pass for fresh.
        """
        for depth, layer in enumerate(self.layers):
            reader = getattr(layer, "get_stale", None)
            if reader is None:
                continue
            try:
                value: LMResponse | None = reader(key, max_age)
            except Exception:
                logger.warning(
                    "cache layer %d (%r) failed a stale read; skipped", depth, layer, exc_info=True
                )
                continue
            if value is not None:
                return value
        return None

    def put(self, key: str, value: LMResponse) -> None:
        for layer in self.layers:
            self._put(layer, key, value)

    def clear(self) -> None:
        """Empty every layer that can be emptied, and reset the counters."""
        for layer in self.layers:
            clear = getattr(layer, "clear", None)
            if callable(clear):
                try:
                    clear()
                except Exception:
                    logger.warning("cache layer %r failed to clear", layer, exc_info=True)
        with self._lock:
            self.hits = [0] * len(self.layers)
            self.misses = 0

    @staticmethod
    def _put(layer: Cache, key: str, value: LMResponse) -> None:
        try:
            layer.put(key, value)
        except Exception:
            logger.warning("cache layer %r failed to write; skipped", layer, exc_info=True)

    def __repr__(self) -> str:
        return f"LayeredCache({list(self.layers)!r})"


def _skips_read(layer: Cache, key: str) -> bool:
    """Whether ``layer`` says a read of ``key`` would miss now (only layers that can tell:
    ``skips_read(key)``, or ``skips_reads()`` for every key)."""
    skips_read = getattr(layer, "skips_read", None)
    if skips_read is not None:
        return bool(skips_read(key))
    skips = getattr(layer, "skips_reads", None)
    return bool(skips()) if skips is not None else False
