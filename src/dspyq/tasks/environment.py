"""The older name of a task's per-process resources: :func:`task_environment` is the
process's :class:`~dspyq.tasks.context.WorkerContext` (same attributes as before).

Kept for the task modules that still ask for it by this name.
"""

from __future__ import annotations

from dspyq.tasks.context import WorkerContext, reset_worker_context, worker_context
from dspyq.tasks.resources import (
    HTTP_MAX_CONNECTIONS,
    HTTP_TIMEOUT,
    JOB_HTTP_CONNECTIONS,
    PROGRAM_CACHE_SIZE,
    ProgramCache,
    ThreadHTTPClients,
)

__all__ = [
    "HTTP_MAX_CONNECTIONS",
    "HTTP_TIMEOUT",
    "JOB_HTTP_CONNECTIONS",
    "PROGRAM_CACHE_SIZE",
    "ProgramCache",
    "TaskEnvironment",
    "ThreadHTTPClients",
    "reset_task_environment",
    "task_environment",
]

TaskEnvironment = WorkerContext


def task_environment() -> WorkerContext:
    """The process's context (see :func:`dspyq.tasks.context.worker_context`)."""
    return worker_context()


def reset_task_environment() -> None:
    """Close and forget the process's context."""
    reset_worker_context()
