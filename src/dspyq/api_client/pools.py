"""The pools at a glance: who serves each queue, what waits in it, how the provider fares.

:func:`pool_statuses` gathers, for every pool (each configured provider, ``optimize``,
and any other queue a live worker consumes):

- its workers, from one Celery broadcast (``active_queues`` and ``active`` asked at once,
  answered within ``timeout``);
- its queue depth: the messages waiting, asked of the broker (Redis or RabbitMQ) under
  the deployment's key prefix;
- the provider's shared circuit breaker and rate-limiter use, read from their Redis keys;
- its recent error rate: executions that ended in the last ``window_minutes``, from SQL.

``dspyq pools`` renders it; ``Client.pools()`` returns it.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from celery import Celery
from sqlalchemy import Engine, func, select
from sqlmodel import col

from dspyq.resilience.breaker import BreakerStatus, CircuitBreaker
from dspyq.resilience.ratelimit import RateLimiter, RateLimitUsage
from dspyq.resilience.redis_client import redis_from_url
from dspyq.settings import Settings
from dspyq.store.columns import utcnow
from dspyq.store.engine import read_connection
from dspyq.store.models import ExecutionRecord
from dspyq.tasks.broker import queue_alias
from dspyq.tasks.broker_status import check_broker, queue_depths
from dspyq.tasks.protocol import LM_QUEUE_PREFIX, OPTIMIZE_QUEUE, lm_queue

__all__ = ["PoolStatus", "WorkerStatus", "pool_statuses"]

OPTIMIZE_POOL = "optimize"
DEFAULT_WINDOW_MINUTES = 15
DEFAULT_TIMEOUT = 1.0


@dataclass(frozen=True)
class WorkerStatus:
    """A live worker serving the pool."""

    name: str
    active_jobs: int | None
    """Messages it is running now (None if it did not say)."""


@dataclass(frozen=True)
class PoolStatus:
    """One pool as an operator sees it."""

    pool: str
    queue: str
    workers: list[WorkerStatus] = field(default_factory=list)
    queued: int = 0
    breaker: BreakerStatus | None = None
    rate_limit: RateLimitUsage | None = None
    recent_executions: int = 0
    recent_failures: int = 0

    @property
    def live(self) -> bool:
        """Served by a worker, or has work waiting."""
        return bool(self.workers or self.queued)

    @property
    def error_rate(self) -> float | None:
        """Share of the recent executions that failed (None without any)."""
        if not self.recent_executions:
            return None
        return self.recent_failures / self.recent_executions

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.rate_limit is not None:
            data["rate_limit"]["utilization"] = self.rate_limit.utilization
        data["live"] = self.live
        data["error_rate"] = self.error_rate
        return data


def pool_statuses(
    settings: Settings,
    app: Celery,
    engine: Engine,
    *,
    window_minutes: float = DEFAULT_WINDOW_MINUTES,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[PoolStatus]:
    """Every pool, configured or served, with its workers, queue, breaker, limiter, errors.

    Raises :class:`~dspyq.errors.BrokerUnavailableError` if the broker cannot be reached,
    :class:`~dspyq.errors.RedisOperationError` if Redis cannot, and
    :class:`~dspyq.errors.StoreError` if the database cannot be read.
    """
    check_broker(app)  # fail in a moment, not after Celery's connection retries
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The broadcast waits out its timeout; everything else is read meanwhile.
        workers_future = pool.submit(_workers_by_queue, app, timeout)
        failures = _recent_outcomes(engine, window_minutes)
        names = [*sorted(settings.providers), OPTIMIZE_POOL]
        queues = {name: _queue_of(name) for name in names}
        workers = workers_future.result()
    for queue in sorted(workers):
        if queue not in queues.values():
            name = queue.removeprefix(LM_QUEUE_PREFIX)
            queues[name] = queue
    depths = queue_depths(app, list(queues.values()))
    guards = redis_from_url(settings.effective_redis_url)
    try:
        statuses = []
        for name, queue in queues.items():
            breaker, usage = (None, None)
            if name in settings.providers:
                breaker, usage = _guards(settings, guards, name)
            done, failed = failures.get(name, (0, 0))
            statuses.append(
                PoolStatus(
                    pool=name,
                    queue=queue,
                    workers=sorted(workers.get(queue, []), key=lambda w: w.name),
                    queued=depths.get(queue, 0),
                    breaker=breaker,
                    rate_limit=usage,
                    recent_executions=done,
                    recent_failures=failed,
                )
            )
    finally:
        guards.close()
    return statuses


def _queue_of(pool: str) -> str:
    return OPTIMIZE_QUEUE if pool == OPTIMIZE_POOL else lm_queue(pool)


def _workers_by_queue(app: Celery, timeout: float) -> dict[str, list[WorkerStatus]]:
    inspect = app.control.inspect(timeout=timeout)
    with ThreadPoolExecutor(max_workers=2) as pool:
        queues_future = pool.submit(inspect.active_queues)
        active_future = pool.submit(app.control.inspect(timeout=timeout).active)
        queues = queues_future.result() or {}
        active = active_future.result() or {}
    by_queue: dict[str, list[WorkerStatus]] = defaultdict(list)
    for worker, consumed in queues.items():
        running = active.get(worker)
        status = WorkerStatus(worker, None if running is None else len(running))
        for queue in consumed or []:
            by_queue[queue_alias(queue)].append(status)
    return dict(by_queue)


def _guards(settings: Settings, client: Any, provider: str) -> tuple[BreakerStatus, RateLimitUsage]:
    conf = settings.provider(provider)
    breaker = CircuitBreaker(
        client,
        provider,
        fail_max=conf.breaker_fail_max,
        reset_timeout=conf.breaker_reset_timeout,
        key_prefix=settings.key_prefix,
    )
    limiter = RateLimiter(
        client,
        provider,
        rate=conf.rate_limit,
        tokens_per_minute=conf.tokens_per_minute,
        key_prefix=settings.key_prefix,
    )
    return breaker.status(), limiter.usage()


def _recent_outcomes(engine: Engine, window_minutes: float) -> dict[str, tuple[int, int]]:
    """``{provider: (executions ended, of which failed)}`` over the last minutes."""
    since = utcnow() - timedelta(minutes=window_minutes)
    query = (
        select(col(ExecutionRecord.lm), col(ExecutionRecord.status), func.count())
        .where(col(ExecutionRecord.finished_at) >= since)
        .where(col(ExecutionRecord.status).in_(["succeeded", "failed"]))
        .group_by(col(ExecutionRecord.lm), col(ExecutionRecord.status))
    )
    with read_connection(engine, "recent executions per pool") as conn:
        rows = conn.execute(query).all()
    outcomes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for lm, status, count in rows:
        provider = str(lm or "").partition("/")[0]
        outcomes[provider][0] += int(count)
        if status == "failed":
            outcomes[provider][1] += int(count)
    return {provider: (done, failed) for provider, (done, failed) in outcomes.items()}
