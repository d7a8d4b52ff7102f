"""The composition root of a worker process: one :class:`~dspyq.tasks.context.WorkerContext`.

:func:`build_worker_context` builds, over the worker runtime built from
:class:`~dspyq.settings.Settings` (:func:`build_worker_runtime`), all a worker
process's tasks share: the SQL stores and recorder, the HTTP clients, the built
programs, the worker runtime (layered LM cache, provider gate with its limiters and
breakers, SQL event sink, live settings; :mod:`dspyq.workers.runtime`), the batch job
threads, the execution hooks and the outage clock. :func:`install_worker_context`
installs one as the process's context, the one slot the tasks read
(:func:`dspyq.tasks.context.worker_context`); the tasks bind its cache and gate for
each job. Tests build their own the same way.

The context type lives in ``dspyq.tasks.context`` so that tasks need not import this
package (dependencies point workers -> tasks).
"""

from __future__ import annotations

import logging

from dspyq.tasks import context as task_context
from dspyq.tasks.batch_jobs import DEFAULT_JOB_SLOTS
from dspyq.tasks.context import WorkerContext, build_task_context
from dspyq.workers.runtime import WorkerRuntime, build_worker_runtime

__all__ = [
    "build_worker_context",
    "build_worker_runtime",
    "install_runtime",
    "install_worker_context",
    "installed_runtime",
]

logger = logging.getLogger(__name__)


def build_worker_context(
    runtime: WorkerRuntime, *, job_slots: int = DEFAULT_JOB_SLOTS
) -> WorkerContext:
    """A worker process's context over ``runtime`` (built by :func:`build_worker_runtime`
    from the settings); ``job_slots``: how many jobs of batches run at once (the
    worker's concurrency)."""
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
    """Make ``ctx`` this process's context (the one installed before is uninstalled);
    uninstalling its runtime takes it out again."""
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


def install_runtime(runtime: WorkerRuntime, *, job_slots: int = DEFAULT_JOB_SLOTS) -> WorkerContext:
    """Build the context over ``runtime`` and install it in this process."""
    ctx = build_worker_context(runtime, job_slots=job_slots)
    install_worker_context(ctx)
    return ctx


def installed_runtime() -> WorkerRuntime | None:
    """The runtime of the context installed in this process, if any."""
    ctx = task_context.installed_context()
    runtime: WorkerRuntime | None = None if ctx is None else ctx.runtime
    return runtime
