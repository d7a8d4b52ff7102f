"""Observers of the module executions a worker process runs (telemetry adds them).

The process's hooks are an :class:`ExecutionHooks` held by its
:class:`~dspyq.tasks.context.WorkerContext`. Every execution, whether it came as its
own message, in a batch or as a step of a multi-hop chord, goes through
:func:`~dspyq.tasks.execute.run_execution`, which runs inside
:meth:`ExecutionHooks.observed`. A hook's ``start`` is called before the execution,
and the function it returns after it, with the exception it ended with (None when it
succeeded). With no hook installed this costs one tuple check per job.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from dspyq.tasks.messages import ExecutionRequest

__all__ = ["ExecutionHook", "ExecutionHooks"]

logger = logging.getLogger(__name__)

ExecutionEnd = Callable[[BaseException | None], None]


class ExecutionHook(Protocol):
    def start(self, request: ExecutionRequest, record_id: str) -> ExecutionEnd | None:
        """Called as the execution ``record_id`` begins; returns what to call when it ends."""
        ...


_OFF = contextlib.nullcontext()


class ExecutionHooks:
    """The hooks observing one process's executions."""

    def __init__(self) -> None:
        self._hooks: tuple[ExecutionHook, ...] = ()
        self._lock = threading.Lock()

    def add(self, hook: ExecutionHook) -> Callable[[], None]:
        """Observe every execution from now on; returns a function that removes ``hook``."""
        with self._lock:
            self._hooks = (*self._hooks, hook)

        def remove() -> None:
            with self._lock:
                self._hooks = tuple(h for h in self._hooks if h is not hook)

        return remove

    def observed(
        self, request: ExecutionRequest, record_id: str
    ) -> contextlib.AbstractContextManager[Any]:
        """The block running one execution, seen by every hook."""
        hooks = self._hooks
        if not hooks:
            return _OFF
        return _observed(hooks, request, record_id)


@contextlib.contextmanager
def _observed(
    hooks: tuple[ExecutionHook, ...], request: ExecutionRequest, record_id: str
) -> Iterator[None]:
    ends: list[ExecutionEnd] = []
    for hook in hooks:
        try:
            end = hook.start(request, record_id)
        except Exception:  # observing must never change what happens
            logger.exception("execution hook %r failed to start", hook)
            continue
        if end is not None:
            ends.append(end)
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        for end in reversed(ends):
            try:
                end(error)
            except Exception:
                logger.exception("execution hook failed to finish")
