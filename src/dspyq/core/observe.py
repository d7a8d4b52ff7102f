"""The event hook: code anywhere in dspyq calls :func:`emit`, installed sinks receive events.

:func:`emit` builds a :class:`dspyq.events.Event` stamped with the job it belongs to
(the ``correlation_id`` and ``parent_id`` keys of the runtime configuration, see
:mod:`dspyq.core.context`) and hands it to every sink: the process-wide ones
(:func:`add_sink`; a worker installs one that writes to SQL) and those of the
current thread or task (:func:`capture`). With no sink installed nothing is built and
nothing happens, so a plain in-process program pays nothing for it.

A sink that raises is logged and skipped: recording what happened must never change
what happens.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dspyq.core.context import current
from dspyq.events import Event

__all__ = [
    "EventSink",
    "add_sink",
    "capture",
    "emit",
    "has_sinks",
    "notify_recorded",
    "remove_sink",
]

logger = logging.getLogger(__name__)

EventSink = Callable[[Event], None]
"""Receives each emitted event, in the thread that emitted it."""

_sinks: tuple[EventSink, ...] = ()
_sinks_lock = threading.Lock()
_context_sinks: contextvars.ContextVar[tuple[EventSink, ...]] = contextvars.ContextVar(
    "dspyq_event_sinks", default=()
)


def add_sink(sink: EventSink) -> Callable[[], None]:
    """Send every event of this process to ``sink``; returns a function that removes it."""
    global _sinks
    with _sinks_lock:
        _sinks = (*_sinks, sink)
    return lambda: remove_sink(sink)


def remove_sink(sink: EventSink) -> None:
    """Stop sending events to ``sink`` (no-op if it is not installed)."""
    global _sinks
    with _sinks_lock:
        remaining = list(_sinks)
        if sink in remaining:
            remaining.remove(sink)
        _sinks = tuple(remaining)


@contextmanager
def capture() -> Iterator[list[Event]]:
    """Collect the events emitted inside the block by this thread or task into a list."""
    events: list[Event] = []
    token = _context_sinks.set((*_context_sinks.get(), events.append))
    try:
        yield events
    finally:
        _context_sinks.reset(token)


def has_sinks() -> bool:
    """Whether an emitted event would reach anyone (callers may skip building data if not)."""
    return bool(_sinks or _context_sinks.get())


def emit(event_type: str, data: dict[str, Any] | None = None) -> Event | None:
    """Build an event for the current job and hand it to the sinks; None if there are none."""
    sinks = (*_sinks, *_context_sinks.get())
    if not sinks:
        return None
    config = current()
    event = Event(
        event_type=event_type,
        correlation_id=_as_id(config.get("correlation_id")),
        parent_id=_as_id(config.get("parent_id")),
        data=dict(data or {}),
    )
    _deliver(sinks, event)
    return event


def notify_recorded(event: Event) -> None:
    """Hand an event its caller already stored to the sinks that only watch events.

    For code that writes an event to SQL itself (to see the write fail): metrics and
    tracing sinks still see it, and sinks that record events (``records_events = True``)
    are skipped so it is not written twice.
    """
    sinks = tuple(
        sink
        for sink in (*_sinks, *_context_sinks.get())
        if not getattr(sink, "records_events", False)
    )
    _deliver(sinks, event)


def _deliver(sinks: tuple[EventSink, ...], event: Event) -> None:
    for sink in sinks:
        try:
            sink(event)
        except Exception:
            logger.exception("event sink %r failed on a %s event", sink, event.event_type)


def _as_id(value: Any) -> str | None:
    return None if value is None else str(value)
