"""The composition root of a worker process: one :class:`~dspyq.tasks.context.WorkerContext`.

:func:`build_worker_context` builds, from :class:`~dspyq.settings.Settings`, all a
worker process's tasks share: the SQL stores and recorder, the HTTP clients, the built
programs, the worker runtime (layered LM cache, provider gate with its limiters and
breakers, SQL event sink, live settings; :mod:`dspyq.workers.runtime`), the batch job
threads, the execution hooks and the outage clock. :func:`install_worker_runtime`
builds one and installs it as the process's context, the one slot the tasks read
(:func:`dspyq.tasks.context.worker_context`); the tasks bind its cache and gate for
each job. Tests build their own the same way.

The context type lives in ``dspyq.tasks.context`` so that tasks need not import this
package (dependencies point workers -> tasks).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from dspyq.resilience.gate import DEFAULT_MAX_INLINE_WAIT
from dspyq.settings import Settings, get_settings
from dspyq.tasks import context as task_context
from dspyq.tasks.batch_jobs import DEFAULT_JOB_SLOTS
from dspyq.tasks.context import WorkerContext, build_task_context
from dspyq.workers.runtime import WorkerRuntime, build_worker_runtime

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["build_worker_context", "install_worker_runtime", "installed_runtime"]

logger = logging.getLogger(__name__)


def build_worker_context(
    settings: Settings | None = None,
    engine: Engine | None = None,
    redis: Redis | None = None,
    *,
    key_prefix: str | None = None,
    max_inline_wait: float = DEFAULT_MAX_INLINE_WAIT,
    live_config: bool = True,
    job_slots: int = DEFAULT_JOB_SLOTS,
) -> WorkerContext:
    """A worker process's context; the arguments as :func:`build_worker_runtime`'s, and
    ``job_slots``: how many jobs of batches run at once (the worker's concurrency)."""
    runtime = build_worker_runtime(
        settings,
        engine,
        redis,
        key_prefix=key_prefix,
        max_inline_wait=max_inline_wait,
        live_config=live_config,
    )
    return build_task_context(
        runtime.settings,
        runtime.engine,
        job_slots=job_slots,
        lm_cache=runtime.cache,
        lm_gate=runtime.gate,
        redis=runtime.redis,
        runtime=runtime,
    )


def install_worker_context(ctx: WorkerContext) -> None:
    """Make ``ctx`` this process's context (the one installed before is uninstalled)."""
    runtime: WorkerRuntime = ctx.runtime
    previous = task_context.installed_context()
    if previous is not None and previous.runtime is not None:
        previous.runtime.uninstall()
    runtime.activate()
    task_context.install_worker_context(ctx)

    def remove() -> None:
        if task_context.installed_context() is ctx:
            task_context.install_worker_context(None)
        ctx.close()

    runtime.on_uninstall.append(remove)
    logger.info("worker context installed (key prefix %r)", runtime.gate.key_prefix)


def install_worker_runtime(
    settings: Settings | None = None,
    engine: Engine | None = None,
    redis: Redis | None = None,
    *,
    key_prefix: str | None = None,
    max_inline_wait: float = DEFAULT_MAX_INLINE_WAIT,
    live_config: bool = True,
    job_slots: int = DEFAULT_JOB_SLOTS,
) -> WorkerRuntime:
    """Build a worker context (see :func:`build_worker_context`) and install it in this
    process; returns its runtime, whose :meth:`~WorkerRuntime.uninstall` takes it out."""
    ctx = build_worker_context(
        settings or get_settings(),
        engine,
        redis,
        key_prefix=key_prefix,
        max_inline_wait=max_inline_wait,
        live_config=live_config,
        job_slots=job_slots,
    )
    install_worker_context(ctx)
    runtime: WorkerRuntime = ctx.runtime
    return runtime


def installed_runtime() -> WorkerRuntime | None:
    """The runtime of the context installed in this process, if any."""
    ctx = task_context.installed_context()
    runtime: WorkerRuntime | None = None if ctx is None else ctx.runtime
    return runtime
