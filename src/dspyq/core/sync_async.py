"""``asyncify`` and ``syncify``: cross between sync and async programs, as DSPy's helpers.

``asyncify(program)`` runs the program in a worker thread carrying the caller's
configuration (a :func:`dspyq.context` block follows the call); ``syncify(program)``
gives an async program a ``forward`` that drives its ``aforward`` to completion.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import MethodType
from typing import Any

from dspyq.core.context import setting
from dspyq.core.module import Module

__all__ = ["asyncify", "run_async", "syncify"]

DEFAULT_ASYNC_MAX_WORKERS = 8  # DSPy's settings.async_max_workers

_limiter_lock = threading.Lock()
_limiters: dict[tuple[int, int], asyncio.Semaphore] = {}


def _limiter(size: int) -> asyncio.Semaphore:
    # One semaphore per event loop and size: an asyncio primitive belongs to its loop.
    key = (id(asyncio.get_running_loop()), size)
    with _limiter_lock:
        if key not in _limiters:
            _limiters[key] = asyncio.Semaphore(size)
        return _limiters[key]


def asyncify(program: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """An async function that runs ``program`` in a worker thread, at most
    ``async_max_workers`` (configuration key, default 8) at a time."""

    async def async_program(*args: Any, **kwargs: Any) -> Any:
        size = int(setting("async_max_workers") or DEFAULT_ASYNC_MAX_WORKERS)
        async with _limiter(size):
            # to_thread copies the context, so configuration overrides follow the call.
            return await asyncio.to_thread(program, *args, **kwargs)

    return async_program


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion from sync code, even inside a running event loop
    (there, on a helper thread with its own loop, instead of DSPy's nest_asyncio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, coro).result()


class SyncWrapper(Module):
    """What ``syncify(program, in_place=False)`` returns: a sync module around it."""

    def __init__(self, program: Any) -> None:
        super().__init__()
        self.program = program

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return run_async(self.program.aforward(*args, **kwargs))


def syncify(program: Any, in_place: bool = True) -> Any:
    """A sync program from an async one (it must define ``aforward``).

    ``in_place=True`` replaces the program's ``forward``; ``in_place=False`` wraps it.
    """
    if not in_place:
        return SyncWrapper(program)

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        return run_async(self.aforward(*args, **kwargs))

    program.forward = MethodType(forward, program)
    return program
