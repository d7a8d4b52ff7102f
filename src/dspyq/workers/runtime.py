"""The LM plumbing of a worker process: the shared cache, gate and event sink.

:func:`build_worker_runtime` builds them; the worker's context
(:func:`dspyq.workers.context.build_worker_context`) holds them and its tasks bind the
cache and gate for every job, so every LM call of a job goes

    L1 in-process LRU -> L2 Redis (the pool's) -> L3 SQL (everyone's, kept across restarts)
    -> rate limiter (Redis, per provider) -> circuit breaker (Redis, per provider) -> HTTP

(L3 is read only while Redis may lack one of its answers, see
:mod:`dspyq.lm.cache_coverage`), and writes every event (``lm_request`` included) to the SQL ``events`` table, and every
``lm_request`` as an ``lm_requests`` row with its tokens and cost (inside a task's
:func:`~dspyq.store.buffer.pending_records`, in the task's final transaction). Events and rows take
their correlation id, parent id and task id from the runtime configuration
(``dspyq.core.context`` keys ``correlation_id``, ``parent_id``, ``task_id``), which the
task sets around the module it runs.

Build it once per worker process, after any fork (Redis and database connections
must not cross a fork); :meth:`WorkerRuntime.uninstall` stops it writing events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Engine

from dspyq.core import observe
from dspyq.core.context import current
from dspyq.events import Event
from dspyq.lm.cache import LRUCache
from dspyq.lm.cache_coverage import L2Coverage
from dspyq.lm.history import MAX_HISTORY, set_history_size
from dspyq.lm.layered_cache import LayeredCache
from dspyq.lm.observe import LM_REQUEST, STATUS_OK
from dspyq.lm.redis_cache import RedisCache
from dspyq.lm.request import LMResponse
from dspyq.lm.write_behind import WriteBehindCache
from dspyq.resilience.gate import DEFAULT_MAX_INLINE_WAIT, RedisProviderGate
from dspyq.resilience.redis_client import redis_from_url
from dspyq.settings import Settings, get_settings
from dspyq.store import EventStore, LMRequestStore, SQLCache, init_db, make_engine
from dspyq.store.buffer import active_records
from dspyq.workers.live_config import LiveConfigListener

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "SQLResponseCache",
    "StoreEventSink",
    "WorkerRuntime",
    "build_worker_runtime",
]

logger = logging.getLogger(__name__)

WORKER_HISTORY_SIZE = 100
"""LM calls a worker process keeps in its global history (a notebook keeps 10,000)."""

L2_FLUSH_INTERVAL = 0.01
"""Seconds a worker gathers its Redis cache writes before storing them in one round trip."""

SQL_CACHE_NAMESPACE = "lm:"
"""Prefix of LM responses' keys in the shared ``cache_entries`` table."""

_FOREVER = 100 * 365 * 86_400.0


class SQLResponseCache:
    """The L3 layer: LM responses as JSON in the store's :class:`~dspyq.store.SQLCache`.

    With a ``coverage``, a read is skipped (a miss) while the L2 cache above is known to
    hold every live entry (see :mod:`dspyq.lm.cache_coverage`).
    """

    def __init__(
        self, store: SQLCache, ttl: float | None = None, coverage: L2Coverage | None = None
    ) -> None:
        self.store = store
        self.ttl = ttl if ttl else None
        self.coverage = coverage

    def get(self, key: str) -> LMResponse | None:
        if self.skips_reads():
            return None
        return self._read(self.store, key)

    def skips_reads(self) -> bool:
        """True while the L2 cache above holds every live entry: a read would miss."""
        return self.coverage is not None and self.coverage.covers()

    def latest_expiry(self) -> float | None:
        """When the last live entry of the whole cache table expires (see
        :meth:`SQLCache.latest_expiry`): over every namespace, so both queries are read
        off the ``expires_at`` index however large the table; other entries can only
        make the answer later, which reads SQL longer, never less."""
        return self.store.latest_expiry()

    def get_stale(self, key: str, max_age: float | None = None) -> LMResponse | None:
        """The answer under ``key`` even past its expiry, unless it expired over ``max_age`` s
        ago (expired rows stay until purged)."""
        past = self.store.clock() - timedelta(seconds=_FOREVER if max_age is None else max_age)
        # The store's clock seam: read the table as if it were ``max_age`` seconds ago.
        return self._read(SQLCache(self.store.engine, clock=lambda: past), key)

    def _read(self, store: SQLCache, key: str) -> LMResponse | None:
        value = store.get(SQL_CACHE_NAMESPACE + key)
        if value is None:
            return None
        try:
            return LMResponse.model_validate(value)
        except ValidationError:
            logger.warning("dropping unreadable LM cache entry %s from SQL", key)
            self.store.delete(SQL_CACHE_NAMESPACE + key)
            return None

    def put(self, key: str, value: LMResponse) -> None:
        self.put_many([(key, value)])

    def put_many(self, entries: list[tuple[str, LMResponse]]) -> None:
        self.store.put_many(
            [(SQL_CACHE_NAMESPACE + key, value.model_dump(mode="json")) for key, value in entries],
            ttl=self.ttl,
        )

    def delete(self, key: str) -> bool:
        """Forget ``key``; returns whether it was cached."""
        return self.store.delete(SQL_CACHE_NAMESPACE + key)

    def __repr__(self) -> str:
        return f"SQLResponseCache(ttl={self.ttl!r})"


class StoreEventSink:
    """Writes each event to the ``events`` table, and each ``lm_request`` to ``lm_requests``.

    Inside a job's :func:`~dspyq.store.buffer.pending_records` block the event and row
    are held in the job's buffer instead, and written in the job's final transaction.
    """

    records_events = True
    """Skipped by :func:`dspyq.core.observe.notify_recorded`: those events are stored."""

    def __init__(self, engine: Engine) -> None:
        self.events = EventStore(engine)
        self.lm_requests = LMRequestStore(engine)

    def __call__(self, event: Event) -> None:
        pending = active_records()
        if event.event_type == LM_REQUEST:
            try:
                row = self._lm_request_row(event)
                if pending is None:
                    self.lm_requests.record_row(row)
                else:
                    pending.add_lm_request(row)
            except Exception:
                logger.exception("could not record lm_request %s", event.data.get("request_id"))
        if pending is None:
            self.events.append(event)
        else:
            pending.add_event(event)

    def _lm_request_row(self, event: Event) -> dict[str, Any]:
        data = event.data
        status = str(data.get("status", STATUS_OK))
        error: dict[str, Any] | None = None
        if status != STATUS_OK:
            error = {
                "type": status,
                "code": data.get("error_code"),
                "message": data.get("error"),
                "retry_after": data.get("retry_after"),
            }
        task_id = current().get("task_id")
        return LMRequestStore.row(
            str(data.get("request_id") or event.event_id),
            model=str(data.get("model", "")),
            provider=data.get("provider"),
            correlation_id=event.correlation_id,
            task_id=None if task_id is None else str(task_id),
            input_tokens=int(data.get("input_tokens") or 0),
            output_tokens=int(data.get("output_tokens") or 0),
            cost_usd=float(data.get("cost_usd") or 0.0),
            duration_ms=data.get("duration_ms"),
            cache_hit=bool(data.get("cache_hit")),
            status="succeeded" if error is None else "failed",
            error=error,
            created_at=event.timestamp,
        )


@dataclass
class WorkerRuntime:
    """A worker's LM layers, gate and sink, and how to take them out again."""

    settings: Settings
    engine: Engine
    redis: Redis
    cache: LayeredCache
    l1: LRUCache
    l2: WriteBehindCache
    l3: WriteBehindCache
    sql_cache: SQLResponseCache
    """The SQL layer that ``l3`` writes behind."""
    coverage: L2Coverage
    gate: RedisProviderGate
    sink: StoreEventSink
    _owns_engine: bool = False
    _owns_redis: bool = False
    _installed: bool = field(default=True, repr=False)
    live: LiveConfigListener | None = field(default=None, repr=False)
    """Follows ``dspyq config set`` and applies changes to :attr:`settings`."""
    on_uninstall: list[Callable[[], None]] = field(default_factory=list, repr=False)
    """Called by :meth:`uninstall` before it closes anything (the context's removal)."""

    def reconfigure(self) -> None:
        """Rebuild what was built from settings that changed live: cache TTLs and sizes,
        and the limiters and breakers (rebuilt on their next use)."""
        conf = self.settings.cache
        ttl = float(conf.ttl) or None
        self.l1.ttl, self.l1.max_entries = ttl, conf.max_entries
        self.l2.layer.ttl = ttl
        self.l3.layer.ttl = ttl
        self.sql_cache.coverage = None if conf.always_read_sql else self.coverage
        self.gate.reconfigure()

    def activate(self) -> None:
        """Start writing the process's events to SQL; a worker keeps a short LM history."""
        # The process-wide history of LM calls is for inspect_history() in a notebook;
        # a worker keeps just the last few calls (see dspyq.lm.history).
        set_history_size(WORKER_HISTORY_SIZE)
        observe.add_sink(self.sink)

    def uninstall(self) -> None:
        """Stop following settings and writing events, flush the caches (idempotent)."""
        if not self._installed:
            return
        self._installed = False
        for undo in self.on_uninstall:
            undo()
        if self.live is not None:
            self.live.stop()
        observe.remove_sink(self.sink)
        set_history_size(MAX_HISTORY)
        self.l2.close()
        self.l3.close()
        if self._owns_redis:
            self.redis.close()
        if self._owns_engine:
            self.engine.dispose()


def build_worker_runtime(
    settings: Settings | None = None,
    engine: Engine | None = None,
    redis: Redis | None = None,
    *,
    key_prefix: str | None = None,
    max_inline_wait: float = DEFAULT_MAX_INLINE_WAIT,
    live_config: bool = True,
) -> WorkerRuntime:
    """The layered cache, the provider gate and the SQL event sink of a worker process.

    ``engine`` and ``redis`` are the seams; when omitted they are built from
    ``settings`` (the database is brought to the current schema) and closed again by
    :meth:`WorkerRuntime.uninstall`. ``key_prefix`` (default: the ``key_prefix``
    setting) namespaces every Redis key: limiters, breakers, L2 cache. With
    ``live_config`` the overrides of ``dspyq config set`` are applied to ``settings``
    now and whenever they change.
    """
    settings = settings or get_settings()
    if key_prefix is None:
        key_prefix = settings.key_prefix
    owns_engine = engine is None
    if engine is None:
        engine = make_engine(settings.database_url)
        init_db(engine)
    owns_redis = redis is None
    if redis is None:
        redis = redis_from_url(settings.effective_redis_url)

    conf = settings.cache
    ttl = float(conf.ttl) or None
    l1 = LRUCache(max_entries=conf.max_entries, ttl=ttl)
    # L2 and L3 writes are batched off the job's path (see dspyq.lm.write_behind); L2's
    # often, so other workers of the pool see a new answer within a few milliseconds.
    sql_cache = SQLResponseCache(SQLCache(engine), ttl=ttl)
    # An L2 miss skips the SQL read while Redis is known to hold all L3 holds.
    coverage = L2Coverage(redis, key_prefix, sql_cache.latest_expiry)
    sql_cache.coverage = None if conf.always_read_sql else coverage
    l2 = WriteBehindCache(
        RedisCache(redis, ttl=ttl, key_prefix=key_prefix, on_write_failure=coverage.lost_writes),
        flush_interval=L2_FLUSH_INTERVAL,
    )
    l3 = WriteBehindCache(sql_cache)
    runtime = WorkerRuntime(
        settings=settings,
        engine=engine,
        redis=redis,
        cache=LayeredCache([l1, l2, l3]),
        l1=l1,
        l2=l2,
        l3=l3,
        sql_cache=sql_cache,
        coverage=coverage,
        gate=RedisProviderGate(redis, settings, key_prefix, max_inline_wait=max_inline_wait),
        sink=StoreEventSink(engine),
        _owns_engine=owns_engine,
        _owns_redis=owns_redis,
    )
    if live_config:
        listener = LiveConfigListener(redis, key_prefix, [settings], runtime.reconfigure)
        runtime.live = listener.start()
    return runtime
