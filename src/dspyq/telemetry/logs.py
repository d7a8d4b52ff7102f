"""Every log record of a worker carries the correlation id of the job that wrote it.

:func:`install_log_correlation` adds a ``correlation_id`` attribute to every record the
process creates (a record factory, so it reaches third-party loggers and every handler
without configuring them one by one) and puts it in Celery's worker log formats.

The id comes from, in order: the job's runtime configuration
(:mod:`dspyq.core.context`, set while a module runs), then the job the current thread
is running (:func:`job_correlation`, set by the worker's task hooks so Celery's own
"Task ... succeeded" lines carry it too), else ``-``.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from dspyq.core.context import current

__all__ = [
    "NO_CORRELATION",
    "WORKER_LOG_FORMAT",
    "WORKER_TASK_LOG_FORMAT",
    "current_correlation_id",
    "install_log_correlation",
    "job_correlation",
]

NO_CORRELATION = "-"
"""What a record outside any job shows as its correlation id."""

WORKER_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] [%(correlation_id)s] %(message)s"
WORKER_TASK_LOG_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] [%(correlation_id)s] "
    "%(task_name)s[%(task_id)s]: %(message)s"
)

job_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dspyq_job_correlation", default=None
)
"""The correlation id of the job this thread or task is running (set by the task hooks)."""

_MARK = "dspyq_correlation"
"""Set on the record factory this module installs, so installing again is a no-op
(the factory itself is the process's, as logging keeps it)."""


def current_correlation_id() -> str:
    """The correlation id of the job running here, or ``-``."""
    value = current().get("correlation_id") or job_correlation.get()
    return NO_CORRELATION if value is None else str(value)


def install_log_correlation(app: Any | None = None) -> None:
    """Stamp every log record with ``correlation_id``; with a Celery ``app``, show it.

    Idempotent. Call it before the app sets up logging so the formats apply.
    """
    if not getattr(logging.getLogRecordFactory(), _MARK, False):
        previous = logging.getLogRecordFactory()

        def record_with_correlation(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if not hasattr(record, "correlation_id"):
                record.correlation_id = current_correlation_id()
            return record

        setattr(record_with_correlation, _MARK, True)
        logging.setLogRecordFactory(record_with_correlation)
    if app is not None:
        app.conf.worker_log_format = WORKER_LOG_FORMAT
        app.conf.worker_task_log_format = WORKER_TASK_LOG_FORMAT
