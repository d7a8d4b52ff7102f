"""The base class of dspyq's Celery tasks: each task runs with its worker's context.

A task reads the process's :class:`~dspyq.tasks.context.WorkerContext` as
``self.context``, and runs with the worker's LM cache and provider gate bound in the
runtime configuration (``dspyq.core.context``), with its shared HTTP client for LMs
built without one, so every LM call it makes (an optimization round's proposals as much
as a module execution's calls) goes through them; nothing is bound when no context is
installed. A worker's app names this class by its path
(``make_app(task_cls=WORKER_TASK_CLASS)``); a client's app never imports it.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from dspyq.core.context import context
from dspyq.tasks.context import WorkerContext, installed_context, worker_context

__all__ = ["ContextTask"]


class ContextTask(Task):
    """A task bound to its worker process's context (see the module docstring)."""

    @property
    def context(self) -> WorkerContext:
        return worker_context()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = installed_context()
        if ctx is None:
            return super().__call__(*args, **kwargs)
        with context(**ctx.lm_bindings(ctx.http)):
            return super().__call__(*args, **kwargs)
