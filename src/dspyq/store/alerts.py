"""The ``alerts`` table: each threshold crossed, stored once per window.

Several watchers may judge the same window; the unique key (kind, program, version,
pool, window) makes :meth:`AlertStore.record` an idempotent insert, and it says whether
this call was the one that stored the alert (so only that watcher emits the event).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import col

from dspyq.store.engine import (
    EngineStore,
    dialect_insert,
    read_record,
    read_records,
    write_transaction,
)
from dspyq.store.models import AlertRecord

__all__ = ["AlertStore"]

_KEY = ["kind", "program_name", "program_version", "pool", "window_start", "window_end"]


class AlertStore(EngineStore):
    """Records and reads alerts through ``engine``."""

    def record(self, alert: AlertRecord) -> bool:
        """Store ``alert`` unless its window's alert is stored already; True if stored now."""
        values = alert.model_dump(exclude={"id"})
        with write_transaction(self.engine, f"record alert {alert.kind}") as conn:
            result = conn.execute(
                dialect_insert(conn, AlertRecord)
                .values(**values)
                .on_conflict_do_nothing(index_elements=_KEY)
                .returning(col(AlertRecord.id))
            )
            inserted = result.scalar()
        if inserted is None:
            return False
        alert.id = int(inserted)
        return True

    def latest(
        self, kind: str, program_name: str, program_version: int, pool: str
    ) -> AlertRecord | None:
        """The newest alert of ``kind`` for one version and pool (by window end)."""
        query = (
            select(AlertRecord)
            .where(
                col(AlertRecord.kind) == kind,
                col(AlertRecord.program_name) == program_name,
                col(AlertRecord.program_version) == program_version,
                col(AlertRecord.pool) == pool,
            )
            .order_by(col(AlertRecord.window_end).desc())
            .limit(1)
        )
        return read_record(self.engine, "read the latest alert", AlertRecord, query)

    def since(
        self, since: datetime | None = None, *, program_name: str | None = None
    ) -> list[AlertRecord]:
        """Alerts stored at or after ``since`` (all when None), oldest first."""
        query = select(AlertRecord).order_by(col(AlertRecord.created_at), col(AlertRecord.id))
        if since is not None:
            query = query.where(col(AlertRecord.created_at) >= since)
        if program_name is not None:
            query = query.where(col(AlertRecord.program_name) == program_name)
        return read_records(self.engine, "read alerts", AlertRecord, query)
