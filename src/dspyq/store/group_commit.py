"""Group commit: writes that arrive together are made together.

A busy worker finishes jobs a few milliseconds apart, and each wrote its records in a
transaction of its own: a commit, a connection and a lock hand-over per write, which
cost as much as the rows themselves. With a :class:`GroupCommit`, a caller that finds no
write in progress writes at once, in its own thread (a lone job pays nothing extra);
callers that arrive while a write is in progress queue up, and the next write takes
them all together. A caller still returns only once its own write is done (or raises
its error), so nothing is acknowledged before it is stored.

The caller doing the writing hands the queue to a waiting caller as soon as its own
write is done, so no caller keeps writing for the others for long. If a group fails as
a whole, each of its writes is tried again on its own, so one bad write fails only its
caller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_GROUP = 64
"""Writes made together at most (a larger group would hold its transaction too long)."""


class _Pending(Generic[T, R]):
    __slots__ = ("done", "error", "item", "leads", "result", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.wake = threading.Event()  # set when done, or when it is its turn to write
        self.done = False
        self.leads = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Runs ``write_many`` over the items that arrive together; ``write_one`` as fallback.

    ``write_many(items)`` returns one result per item, in order; if it raises,
    ``write_one(item)`` is called for each item and its result or error goes to that
    item's caller. A group of one is written by ``write_one``.
    """

    def __init__(
        self,
        write_many: Callable[[Sequence[T]], list[R]],
        write_one: Callable[[T], R],
        *,
        name: str,
        max_group: int = MAX_GROUP,
    ) -> None:
        self._write_many = write_many
        self._write_one = write_one
        self._name = name
        self._max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Pending[T, R]] = []
        self._writing = False

    def __call__(self, item: T) -> R:
        """Write ``item`` with whatever else is waiting; returns once it is written."""
        pending: _Pending[T, R] = _Pending(item)
        with self._lock:
            self._queue.append(pending)
            pending.leads = not self._writing
            self._writing = True
        while not pending.done:
            if pending.leads:
                self._lead(pending)
            else:
                pending.wake.wait()
                pending.wake.clear()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def _lead(self, mine: _Pending[T, R]) -> None:
        """Write groups until ``mine`` is written, then pass the turn on."""
        try:
            while not mine.done:
                with self._lock:
                    group = self._queue[: self._max_group]
                    del self._queue[: self._max_group]
                self._write(group)
        finally:  # even if this thread is interrupted, the queue must not stall
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._writing = False
                else:
                    successor.leads = True
            if successor is not None:
                successor.wake.set()

    def _write(self, group: list[_Pending[T, R]]) -> None:
        try:
            if len(group) == 1:
                self._write_each(group)
                return
            try:
                results = self._write_many([pending.item for pending in group])
                if len(results) != len(group):
                    raise RuntimeError(f"{len(results)} results for {len(group)} writes")
            except Exception:
                logger.debug("a group of %d %s failed; writing each alone", len(group), self._name)
                self._write_each(group)
                return
            for pending, result in zip(group, results, strict=True):
                pending.result = result
                self._finish(pending)
        finally:
            for pending in group:  # never leave a caller waiting, whatever happened
                if not pending.done:
                    pending.error = pending.error or RuntimeError("the group write was cut short")
                    self._finish(pending)

    def _write_each(self, group: list[_Pending[T, R]]) -> None:
        for pending in group:
            try:
                pending.result = self._write_one(pending.item)
            except BaseException as exc:
                pending.error = exc
            self._finish(pending)

    @staticmethod
    def _finish(pending: _Pending[T, R]) -> None:
        pending.done = True
        pending.wake.set()
