"""Records a job holds back while it runs, to be written in the job's final transaction.

A worker's event sink writes every ``lm_request`` as an event and an ``lm_requests``
row: two write transactions per LM call, on top of the job's own. While a task runs
its program inside :func:`pending_records`, the sink adds those records to the
:class:`PendingRecords` instead, and the task writes them with its success (or its
failure, or before it re-queues itself) in one transaction. Every event has a stable
``event_id`` and every row a stable ``request_id``, and both are inserted with
``ON CONFLICT DO NOTHING``, so writing a record twice still stores it once.

The buffer lives in a :class:`contextvars.ContextVar`: threads and asyncio tasks that
carry the task's context add to the same buffer; code outside a task sees none and
writes at once, as before.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dspyq.events import Event

__all__ = ["PendingRecords", "active_records", "pending_records"]


class PendingRecords:
    """Events and ``lm_requests`` rows waiting for their job's transaction (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._lm_requests: list[dict[str, Any]] = []

    def add_event(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def add_lm_request(self, row: dict[str, Any]) -> None:
        """Hold an ``lm_requests`` row, as built by :meth:`LMRequestStore.row`."""
        with self._lock:
            self._lm_requests.append(row)

    @property
    def events(self) -> list[Event]:
        """The events held so far, in the order they were added (a copy)."""
        with self._lock:
            return list(self._events)

    @property
    def lm_requests(self) -> list[dict[str, Any]]:
        """The ``lm_requests`` rows held so far (a copy)."""
        with self._lock:
            return list(self._lm_requests)

    def discard(self, events: list[Event], lm_requests: list[dict[str, Any]]) -> None:
        """Forget records that have been written (ones added meanwhile are kept)."""
        written_events = {id(event) for event in events}
        written_rows = {id(row) for row in lm_requests}
        with self._lock:
            self._events = [e for e in self._events if id(e) not in written_events]
            self._lm_requests = [r for r in self._lm_requests if id(r) not in written_rows]

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._events or self._lm_requests)

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"PendingRecords(events={len(self._events)}, lm_requests={len(self._lm_requests)})"
            )


_active: contextvars.ContextVar[PendingRecords | None] = contextvars.ContextVar(
    "dspyq_pending_records", default=None
)


def active_records() -> PendingRecords | None:
    """The buffer of the job running in this context, or None outside one."""
    return _active.get()


@contextmanager
def pending_records() -> Iterator[PendingRecords]:
    """Hold this context's sink records in a new buffer until the block ends.

    The caller writes what the buffer holds; nothing is written when the block ends.
    """
    records = PendingRecords()
    token = _active.set(records)
    try:
        yield records
    finally:
        _active.reset(token)
