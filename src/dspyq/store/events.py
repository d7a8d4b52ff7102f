"""The ``events`` table: the trace of every job, queried by correlation id.

Appending is idempotent by ``event_id`` (a retried task re-sending its events adds
nothing), and ``data`` is capped so one huge payload cannot bloat the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, func, select
from sqlmodel import col

from dspyq.events import DEFAULT_MAX_DATA_BYTES, MIN_MAX_DATA_BYTES, Event, cap_data
from dspyq.store.engine import insert_once, read_connection, write_transaction
from dspyq.store.models import EventRecord

# Keeps each INSERT well under SQLite's and PostgreSQL's bound-parameter limits.
_BATCH_ROWS = 500


class EventStore:
    """Appends and queries events through ``engine``."""

    def __init__(self, engine: Engine, *, max_data_bytes: int = DEFAULT_MAX_DATA_BYTES) -> None:
        if max_data_bytes < MIN_MAX_DATA_BYTES:
            raise ValueError(f"max_data_bytes must be at least {MIN_MAX_DATA_BYTES}")
        self.engine = engine
        self.max_data_bytes = max_data_bytes

    def append(self, events: Event | Iterable[Event]) -> int:
        """Store ``events``, skipping any whose ``event_id`` is already stored.

        Returns how many were new.
        """
        batch = [events] if isinstance(events, Event) else list(events)
        rows: dict[str, dict[str, Any]] = {}
        for event in batch:
            rows.setdefault(event.event_id, self._row(event))
        if not rows:
            return 0
        pending = list(rows.values())
        inserted = 0
        with write_transaction(self.engine, f"append {len(pending)} events") as conn:
            for start in range(0, len(pending), _BATCH_ROWS):
                rows_now = pending[start : start + _BATCH_ROWS]
                insert = insert_once(conn, EventRecord, "event_id", rows_now)
                result = conn.execute(insert.returning(col(EventRecord.id)))
                inserted += len(result.all())
        return inserted

    def by_correlation(self, correlation_id: str, *, event_type: str | None = None) -> list[Event]:
        """The events of one job, oldest first (ties broken by insertion order)."""
        query = (
            select(EventRecord)
            .where(col(EventRecord.correlation_id) == correlation_id)
            .order_by(col(EventRecord.timestamp), col(EventRecord.id))
        )
        if event_type is not None:
            query = query.where(col(EventRecord.event_type) == event_type)
        with read_connection(self.engine, f"read events of {correlation_id}") as conn:
            rows = conn.execute(query).mappings().all()
        return [_event(row) for row in rows]

    def count(self, *, correlation_id: str | None = None, event_type: str | None = None) -> int:
        """How many events are stored, optionally for one job and/or one type."""
        query = select(func.count()).select_from(EventRecord)
        if correlation_id is not None:
            query = query.where(col(EventRecord.correlation_id) == correlation_id)
        if event_type is not None:
            query = query.where(col(EventRecord.event_type) == event_type)
        with read_connection(self.engine, "count events") as conn:
            return int(conn.execute(query).scalar_one())

    def _row(self, event: Event) -> dict[str, Any]:
        payload = event.model_dump(mode="json", include={"data"})["data"]
        data, truncated = cap_data(payload, self.max_data_bytes)
        return {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "timestamp": event.timestamp,
            "node": event.node,
            "pid": event.pid,
            "correlation_id": event.correlation_id,
            "parent_id": event.parent_id,
            "data": data,
            "truncated": event.truncated or truncated,
        }


_EVENT_COLUMNS = (
    "event_id",
    "event_type",
    "timestamp",
    "node",
    "pid",
    "correlation_id",
    "parent_id",
    "data",
    "truncated",
)


def _event(row: Any) -> Event:
    return Event(**{column: row[column] for column in _EVENT_COLUMNS})
