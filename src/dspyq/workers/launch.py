"""Start one worker pool: ``dspyq worker --pool openai`` as a Python API.

A pool is a Celery worker consuming one queue: ``dspyq.lm.<provider>`` for a
configured provider, or ``dspyq.optimize`` for optimization runs. LM calls are I/O
bound, so the default execution pool is ``threads``. Before the worker takes jobs it
imports the task modules, creates the SQL schema, and builds the worker context
(:mod:`dspyq.workers.context`: stores, layered cache, provider gate, event sink, batch
threads, hooks) in every process that runs tasks.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import Celery, signals
from celery.utils.nodenames import host_format

from dspyq.errors import ConfigurationError
from dspyq.settings import Settings
from dspyq.tasks.app import OPTIMIZE_QUEUE, WORKER_TASK_CLASS, lm_queue, make_app

if TYPE_CHECKING:
    from dspyq.tasks.context import WorkerContext

logger = logging.getLogger(__name__)

OPTIMIZE_POOL = "optimize"
EXEC_POOLS = ("threads", "prefork", "gevent")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LM_POOL_CONCURRENCY = 8
OPTIMIZE_POOL_CONCURRENCY = 2
TASK_MODULES = (
    "dspyq.tasks.execute",
    "dspyq.tasks.batch",
    "dspyq.tasks.multihop",
    "dspyq.tasks.evaluate",
    "dspyq.tasks.optimize",
)
ContextSetup = Callable[["WorkerContext"], None]
"""Called with each worker context as it is installed (telemetry hooks, prefetch)."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything that tells one worker apart: what it consumes and how it runs."""

    pool: str
    queue: str
    concurrency: int
    exec_pool: str
    hostname: str
    loglevel: str = "info"
    metrics_port: int | None = None
    """Port of this worker's Prometheus ``/metrics`` (None: not served)."""


def worker_pools(settings: Settings) -> list[str]:
    """The pools a worker may serve: every configured provider, then ``optimize``."""
    return [*sorted(settings.providers), OPTIMIZE_POOL]


def pool_queue(pool: str) -> str:
    """The queue a pool consumes."""
    return OPTIMIZE_QUEUE if pool == OPTIMIZE_POOL else lm_queue(pool)


def worker_spec(
    settings: Settings,
    pool: str,
    *,
    concurrency: int | None = None,
    exec_pool: str = "threads",
    hostname: str | None = None,
    loglevel: str = "info",
    metrics_port: int | None = None,
) -> WorkerSpec:
    """Validate the options of one worker and fill in the defaults.

    Raises :class:`ConfigurationError` for an unknown pool (listing the valid ones), an
    unknown execution pool, or a concurrency below 1.
    """
    pools = worker_pools(settings)
    if pool not in pools:
        raise ConfigurationError(
            f"unknown pool {pool!r}; valid pools: {', '.join(pools)}. "
            f"A provider pool needs the provider configured "
            f"(DSPYQ_PROVIDERS__{pool.upper()}__API_BASE=...)",
            context={"pool": pool, "valid_pools": pools},
        )
    if exec_pool not in EXEC_POOLS:
        raise ConfigurationError(
            f"unknown execution pool {exec_pool!r}; choose one of {', '.join(EXEC_POOLS)}",
            context={"exec_pool": exec_pool},
        )
    if exec_pool == "gevent" and importlib.util.find_spec("gevent") is None:
        raise ConfigurationError(
            "the gevent execution pool needs gevent installed (pip install gevent)",
            context={"exec_pool": exec_pool},
        )
    if loglevel.lower() not in LOG_LEVELS:
        raise ConfigurationError(
            f"unknown log level {loglevel!r}; choose one of {', '.join(LOG_LEVELS)}",
            context={"loglevel": loglevel},
        )
    if concurrency is None:
        concurrency = OPTIMIZE_POOL_CONCURRENCY if pool == OPTIMIZE_POOL else LM_POOL_CONCURRENCY
    if metrics_port is None:
        metrics_port = settings.telemetry.metrics_port
    if metrics_port is not None and not 0 <= metrics_port <= 65535:
        raise ConfigurationError(
            f"metrics port must be between 0 and 65535, got {metrics_port}",
            context={"metrics_port": metrics_port},
        )
    if concurrency < 1:
        raise ConfigurationError(
            f"concurrency must be at least 1, got {concurrency}",
            context={"concurrency": concurrency},
        )
    # "%h" expands to this machine's name, so pools sharing a machine get distinct names.
    name = host_format(hostname or f"{pool}@%h", hostname=socket.gethostname())
    return WorkerSpec(
        pool=pool,
        queue=pool_queue(pool),
        concurrency=concurrency,
        exec_pool=exec_pool,
        hostname=name,
        loglevel=loglevel.lower(),
        metrics_port=metrics_port,
    )


def import_task_modules(modules: tuple[str, ...] = TASK_MODULES) -> list[str]:
    """Import the modules declaring dspyq's tasks; return the names of the missing ones.

    A module that does not exist is skipped (the caller logs it); an import error
    inside an existing module propagates.
    """
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            missing.append(name)
    return missing


def create_schema(settings: Settings) -> None:
    """Create or upgrade the SQL store's schema once, before any task runs."""
    from dspyq.store import init_db, make_engine

    engine = make_engine(settings.database_url)
    try:
        init_db(engine)
    finally:
        engine.dispose()


def install_context(
    settings: Settings, job_slots: int, setup: tuple[ContextSetup, ...] = ()
) -> WorkerContext:
    """Build this process's worker context and install it; ``setup`` sees it first."""
    from dspyq.resilience.redis_client import redis_from_url
    from dspyq.store import make_engine
    from dspyq.workers.context import (
        build_worker_context,
        build_worker_runtime,
        install_worker_context,
    )

    engine = make_engine(settings.database_url)
    redis = redis_from_url(settings.effective_redis_url)
    runtime = build_worker_runtime(settings, engine, redis, key_prefix=settings.key_prefix)
    ctx = build_worker_context(runtime, job_slots=job_slots)
    for step in setup:
        step(ctx)
    install_worker_context(ctx)
    logger.info("worker runtime installed")
    return ctx


class RuntimeInstaller:
    """Installs the worker context in each process that runs tasks, via Celery's signals.

    With ``threads``/``gevent`` tasks run in the worker's own process (``worker_init``);
    with ``prefork`` they run in forked children (``worker_process_init``), which must
    not inherit the parent's Redis and SQL connections. Celery swallows exceptions
    raised by signal receivers, so a failure in the worker's own process is kept in
    :attr:`error` for the launcher to raise, and a failing child exits.
    """

    def __init__(
        self,
        settings: Settings,
        exec_pool: str,
        job_slots: int,
        setup: tuple[ContextSetup, ...] = (),
    ) -> None:
        self.settings = settings
        self.in_children = exec_pool == "prefork"
        self.job_slots = job_slots
        self.setup = setup
        self.error: BaseException | None = None

    def connect(self) -> None:
        signals.worker_init.connect(self._on_worker_init, weak=False)
        signals.worker_process_init.connect(self._on_process_init, weak=False)

    def disconnect(self) -> None:
        signals.worker_init.disconnect(self._on_worker_init)
        signals.worker_process_init.disconnect(self._on_process_init)

    def _install(self) -> None:
        install_context(self.settings, self.job_slots, self.setup)

    def _on_worker_init(self, **_: Any) -> None:
        if self.in_children:
            return
        try:
            self._install()
        except Exception as exc:
            self.error = exc

    def _on_process_init(self, **_: Any) -> None:
        if not self.in_children:
            return
        try:
            self._install()
        except Exception:
            logger.critical("could not install the worker context; child exits", exc_info=True)
            raise SystemExit(1) from None


def run_worker(settings: Settings, spec: WorkerSpec, app: Celery | None = None) -> int:
    """Run a worker in the foreground until it is stopped (SIGTERM: warm shutdown).

    Returns the worker's exit code. Configuration problems (schema, runtime) raise
    dspyq errors before any job is taken.
    """
    from dspyq.telemetry.logs import install_log_correlation
    from dspyq.telemetry.worker import install_worker_telemetry
    from dspyq.workers.prefetch import BatchPrefetch

    app = app or make_app(settings, task_cls=WORKER_TASK_CLASS)
    install_log_correlation(app)  # before the log setup, which reads its formats
    # Celery's logging first, so everything below logs in the worker's format.
    app.log.setup(spec.loglevel.upper(), hostname=spec.hostname, redirect_stdouts=False)
    if spec.loglevel.lower() != "debug":
        # Alembic narrates every plugin it loads at INFO; only its warnings matter here.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in import_task_modules():
        logger.warning("task module %s does not exist yet: its tasks are not served", name)
    create_schema(settings)
    telemetry = install_worker_telemetry(
        settings, pool=spec.pool, metrics_port=spec.metrics_port, exec_pool=spec.exec_pool
    )
    prefetch = BatchPrefetch() if spec.exec_pool != "prefork" else None
    setup: tuple[ContextSetup, ...] = (telemetry.attach,)
    if prefetch is not None:
        prefetch.connect()
        setup += (prefetch.attach,)
    # --concurrency bounds jobs at once, batched or not; a prefork child is one slot.
    slots = 1 if spec.exec_pool == "prefork" else spec.concurrency
    installer = RuntimeInstaller(settings, spec.exec_pool, slots, setup)
    installer.connect()
    try:
        worker = app.Worker(
            hostname=spec.hostname,
            queues=[spec.queue],
            concurrency=spec.concurrency,
            pool_cls=spec.exec_pool,
            loglevel=spec.loglevel.upper(),
        )
        if installer.error is not None:
            raise installer.error
        worker.start()
        return int(getattr(worker, "exitcode", 0) or 0)
    finally:
        installer.disconnect()
        if prefetch is not None:
            prefetch.disconnect()
        telemetry.uninstall()
