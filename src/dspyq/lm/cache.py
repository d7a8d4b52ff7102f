"""The in-process (L1) response cache, keyed by a stable hash of the request.

The LM talks to the cache through the small :class:`Cache` protocol (``get``/``put``)
so that Redis (L2) and SQL (L3) layers can be stacked behind or in front of the
:class:`LRUCache` later without touching the LM.

Which cache an LM call uses: the one bound in the runtime configuration under
:data:`CACHE_KEY` (a worker binds its layered cache for each job), else the process's
in-process cache, as ``dspy.cache`` is in DSPy (built from ``settings.cache`` on first
use; :func:`set_default_cache` replaces it).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

from dspyq.core.context import setting
from dspyq.lm.request import LMResponse

CACHE_KEY = "lm_cache"
"""The runtime configuration key a worker binds its cache under."""

# Call options that change how a request is sent, not what it answers.
NON_SEMANTIC_KWARGS = frozenset(
    {"cache", "num_retries", "timeout", "api_key", "api_base", "stream", "stream_options"}
)


def cache_key(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys, no whitespace)."""
    text = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@runtime_checkable
class Cache(Protocol):
    """What the LM needs from a cache layer."""

    def get(self, key: str) -> LMResponse | None: ...

    def put(self, key: str, value: LMResponse) -> None: ...


class LRUCache:
    """A thread-safe least-recently-used cache with an optional time to live."""

    def __init__(self, max_entries: int = 10_000, ttl: float | None = None) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: OrderedDict[str, tuple[float, LMResponse]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> LMResponse | None:
        with self._lock:
            item = self._entries.get(key)
            if item is not None and self.ttl is not None and time.monotonic() - item[0] > self.ttl:
                # Expired entries stay until evicted: a stale answer beats none when the
                # provider is down (see dspyq.lm.degrade).
                item = None
            if item is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return item[1]

    def get_stale(self, key: str, max_age: float | None = None) -> LMResponse | None:
        """The entry under ``key`` even if expired, unless it expired over ``max_age`` s ago."""
        with self._lock:
            item = self._entries.get(key)
        if item is None:
            return None
        too_old = (
            max_age is not None
            and self.ttl is not None
            and time.monotonic() - item[0] > self.ttl + max_age
        )
        return None if too_old else item[1]

    def put(self, key: str, value: LMResponse) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = 0
            self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries


# The in-process cache of a plain process: DSPy's own semantics (one ``dspy.cache``).
_default_cache: Cache | None = None
_default_lock = threading.Lock()


def default_cache() -> Cache:
    """The cache LM calls here use: the bound one, else the in-process one."""
    bound: Cache | None = setting(CACHE_KEY)
    if bound is not None:
        return bound
    return _process_cache()


def _process_cache() -> Cache:
    """The in-process cache, sized from ``settings.cache``."""
    global _default_cache
    with _default_lock:
        if _default_cache is None:
            from dspyq.settings import get_settings

            conf = get_settings().cache
            _default_cache = LRUCache(max_entries=conf.max_entries, ttl=float(conf.ttl) or None)
        return _default_cache


def set_default_cache(cache: Cache | None) -> None:
    """Replace the in-process cache (``None``: build a fresh one from settings on next use)."""
    global _default_cache
    with _default_lock:
        _default_cache = cache


def clear_cache() -> None:
    """Empty the cache LM calls here use, if it can be emptied."""
    cache = default_cache()
    clear = getattr(cache, "clear", None)
    if callable(clear):
        clear()


class NullCache:
    """A cache that keeps nothing: what ``configure_cache`` installs with both layers off."""

    def get(self, key: str) -> LMResponse | None:
        return None

    def put(self, key: str, value: LMResponse) -> None:
        return None


def configure_cache(
    enable_disk_cache: bool | None = True,
    enable_memory_cache: bool | None = True,
    disk_cache_dir: str | None = None,
    disk_size_limit_bytes: int | None = None,
    memory_max_entries: int = 1_000_000,
    restrict_pickle: bool = False,
    safe_types: list[type[Any]] | None = None,
) -> None:
    """DSPy's ``configure_cache`` for this process's in-process cache.

    With both layers off, nothing is cached; otherwise answers are kept in memory, up
    to ``memory_max_entries``. dspyq has no in-process disk layer (a deployment's
    shared layers are Redis and SQL, see the settings), and it never pickles cache
    entries, so the disk and pickle arguments are accepted for DSPy's signature only.
    """
    if not enable_disk_cache and not enable_memory_cache:
        set_default_cache(NullCache())
        return
    set_default_cache(LRUCache(max_entries=int(min(memory_max_entries, 2**62))))
