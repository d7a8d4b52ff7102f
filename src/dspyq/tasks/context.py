"""One worker process's composition root, as its tasks see it: the :class:`WorkerContext`.

Built once per worker process from :class:`~dspyq.settings.Settings` by
:func:`dspyq.workers.context.build_worker_context` (SQL stores, HTTP clients, built
programs and, in a worker, its layered LM cache, provider gate and live settings), and
installed in the one slot this module keeps (:func:`install_worker_context`). Tasks
read it with :func:`worker_context` (``self.context`` on a
:class:`~dspyq.tasks.base.ContextTask`); tests build their own.

The type lives here, in ``tasks``, so that tasks need not import ``workers``:
dependencies point workers -> tasks -> core/lm/store. A process running tasks without a
worker (a test running a task eagerly) gets a plain context built from its settings on
first use, with no gate and the in-process LM cache, as a notebook has.

The LM plumbing is not reached through a global: a task binds :meth:`lm_bindings` into
the runtime configuration (:mod:`dspyq.core.context`) around what it runs, where
:func:`dspyq.lm.gate.provider_gate` and :func:`dspyq.lm.cache.default_cache` read it.

What stays process-wide, and why: DSPy's own semantics for a plain process
(``dspyq.configure``, the LM history behind ``inspect_history``, the in-process LM
cache and the HTTP client LMs share when nothing is bound); the core's event sinks
(:mod:`dspyq.core.observe`, where the worker's SQL sink and metrics listen); and the
OpenTelemetry tracer per endpoint (:mod:`dspyq.telemetry.tracing`), which a client
shares.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy.engine import Engine

from dspyq.core import observe
from dspyq.core.context import context
from dspyq.events import Event
from dspyq.lm.cache import CACHE_KEY, Cache
from dspyq.lm.gate import GATE_KEY, ProviderGate
from dspyq.lm.providers.http import HTTP_CLIENT_KEY
from dspyq.settings import Settings, get_settings
from dspyq.store import EventStore, ExecutionStore, LMRequestStore, init_db, make_engine
from dspyq.store.attempts import AttemptRecorder
from dspyq.tasks.batch_jobs import DEFAULT_JOB_SLOTS, BatchJobs
from dspyq.tasks.hooks import ExecutionHooks
from dspyq.tasks.outage import OutageClock
from dspyq.tasks.resources import (
    HTTP_MAX_CONNECTIONS,
    HTTP_TIMEOUT,
    ProgramCache,
    ThreadHTTPClients,
)

if TYPE_CHECKING:
    from redis import Redis

    from dspyq.deploy.cache import ProgramCache as DeployedPrograms

__all__ = [
    "WorkerContext",
    "build_task_context",
    "install_worker_context",
    "installed_context",
    "reset_worker_context",
    "worker_context",
]


@dataclass
class WorkerContext:
    """Everything one worker process's tasks share; see the module docstring."""

    settings: Settings
    engine: Engine
    executions: ExecutionStore
    events: EventStore
    lm_requests: LMRequestStore
    recorder: AttemptRecorder
    programs: ProgramCache
    http: httpx.Client
    """Shared by a task's own threads (optimization runs evaluate many examples at once)."""
    job_http: ThreadHTTPClients
    """Each job thread's own client, for module executions."""
    node: str = field(default_factory=socket.gethostname)
    lm_cache: Cache | None = None
    """The cache every LM call of a job uses (None: the in-process one)."""
    lm_gate: ProviderGate | None = None
    """The gate every provider attempt of a job passes (None: no gate)."""
    redis: Redis | None = None
    """The process's Redis client (streams publish through it); built on first use."""
    hooks: ExecutionHooks = field(default_factory=ExecutionHooks)
    batch: BatchJobs = field(default_factory=BatchJobs)
    outage: OutageClock = field(default_factory=OutageClock)
    runtime: Any = None
    """The worker runtime this context was built with (``dspyq.workers.runtime``), if any."""
    deployed: DeployedPrograms | None = None
    """Saved programs by reference, following alias moves (see :meth:`deployed_programs`)."""
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    """Called by :meth:`close`, last first: what this context built and owns."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def emit(self, event: Event) -> None:
        """Record an event now (idempotent by event id); metrics and tracing see it too."""
        self.events.append(event)
        observe.notify_recorded(event)

    def lm_bindings(self, http: httpx.Client | None = None) -> dict[str, Any]:
        """The runtime configuration a job's LM calls need: this worker's cache and gate,
        and ``http`` for LMs built without a client of their own (a program's own LMs)."""
        bindings: dict[str, Any] = {} if http is None else {HTTP_CLIENT_KEY: http}
        if self.lm_cache is not None:
            bindings[CACHE_KEY] = self.lm_cache
        if self.lm_gate is not None:
            bindings[GATE_KEY] = self.lm_gate
        return bindings

    @contextlib.contextmanager
    def bound(self) -> Iterator[None]:
        """The block's LM calls use this worker's cache, gate and shared HTTP client."""
        with context(**self.lm_bindings(self.http)):
            yield

    def stream_redis(self) -> Redis:
        """The Redis client streams publish through (its pool is thread-safe)."""
        with self._lock:
            if self.redis is None:
                from dspyq.resilience.redis_client import redis_from_url

                client = redis_from_url(self.settings.effective_redis_url)
                self.redis = client
                self.closers.append(client.close)
            return self.redis

    def deployed_programs(self) -> DeployedPrograms:
        """The alias-aware cache jobs by reference resolve through, started on first use:
        it follows alias moves over Redis pub/sub (:mod:`dspyq.deploy.cache`)."""
        with self._lock:
            if self.deployed is None:
                from dspyq.deploy.cache import ProgramCache as DeployedPrograms

                redis = self.redis
                if redis is None:
                    from dspyq.resilience.redis_client import redis_from_url

                    redis = self.redis = redis_from_url(self.settings.effective_redis_url)
                    self.closers.append(redis.close)
                cache = DeployedPrograms(self.engine, redis, self.settings.key_prefix)
                self.deployed = cache.start()
                self.closers.append(cache.stop)
            return self.deployed

    def close(self) -> None:
        """Close what this context owns (idempotent)."""
        self.batch.close()
        closers, self.closers = self.closers, []
        for close in reversed(closers):
            close()


def build_task_context(
    settings: Settings,
    engine: Engine | None = None,
    *,
    job_slots: int = DEFAULT_JOB_SLOTS,
    **parts: Any,
) -> WorkerContext:
    """A context with the SQL stores, HTTP clients and program cache built from ``settings``.

    ``engine`` is the seam; when omitted one is built (the schema migrated) and disposed
    of by :meth:`WorkerContext.close`. ``parts`` fill the other fields (``lm_cache``,
    ``lm_gate``, ``redis``, ``runtime``).
    """
    closers: list[Callable[[], None]] = []
    if engine is None:
        engine = make_engine(settings.database_url)
        init_db(engine)
        closers.append(engine.dispose)
    limits = httpx.Limits(
        max_connections=HTTP_MAX_CONNECTIONS, max_keepalive_connections=HTTP_MAX_CONNECTIONS
    )
    http = httpx.Client(limits=limits, timeout=HTTP_TIMEOUT)
    job_http = ThreadHTTPClients(HTTP_TIMEOUT, settings.lm_http_path)
    closers += [http.close, job_http.close]
    return WorkerContext(
        settings=settings,
        engine=engine,
        executions=ExecutionStore(engine),
        events=EventStore(engine),
        lm_requests=LMRequestStore(engine),
        recorder=AttemptRecorder(engine, grouped=True),
        programs=ProgramCache(settings.allowed_imports),
        http=http,
        job_http=job_http,
        batch=BatchJobs(job_slots),
        closers=closers,
        **parts,
    )


# The one process-wide slot of the worker layer: the context of this process's tasks.
_installed: WorkerContext | None = None
_slot_lock = threading.Lock()


def installed_context() -> WorkerContext | None:
    """The context installed in this process, if any (never builds one)."""
    return _installed


def worker_context() -> WorkerContext:
    """The context of this process's tasks; a plain one is built on first use if no
    worker installed one."""
    global _installed
    context_now = _installed
    if context_now is not None:
        return context_now
    with _slot_lock:
        if _installed is None:
            _installed = build_task_context(get_settings())
        return _installed


def install_worker_context(ctx: WorkerContext | None) -> WorkerContext | None:
    """Make ``ctx`` this process's context (None: none); returns the one it replaces."""
    global _installed
    with _slot_lock:
        previous, _installed = _installed, ctx
    return previous


def reset_worker_context() -> None:
    """Close and forget the installed context (after settings changed, or at exit)."""
    previous = install_worker_context(None)
    if previous is not None:
        previous.close()
