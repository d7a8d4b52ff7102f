"""The ``optimization_runs`` table: one optimization run, its progress and checkpoint.

The client creates the row (``pending``); the coordinator task moves it to ``running``,
writes a checkpoint after every round and closes it with a final status. Cancelling is
a conditional update, so a run that already finished keeps its final status.
"""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from dspyq.store.columns import utcnow
from dspyq.store.engine import EngineStore, read_record, read_records, write_transaction
from dspyq.store.models import TERMINAL_RUN_STATUSES, OptimizationRunRecord


class RunStore(EngineStore):
    """Reads and writes optimization runs through ``engine``."""

    def create(
        self,
        run_id: str,
        *,
        correlation_id: str,
        optimizer: str,
        config: dict[str, Any],
        program: str,
        lm: str,
    ) -> OptimizationRunRecord:
        """Record a new run, ``pending`` until its coordinator starts it."""
        now = utcnow()
        record = OptimizationRunRecord(
            id=run_id,
            correlation_id=correlation_id,
            optimizer=optimizer,
            config=config,
            program=program,
            lm=lm,
            status="pending",
            created_at=now,
            updated_at=now,
        )
        with write_transaction(self.engine, f"record optimization run {run_id}") as conn:
            conn.execute(
                OptimizationRunRecord.__table__.insert().values(  # type: ignore[attr-defined]
                    **record.model_dump()
                )
            )
        return record

    def get(self, run_id: str) -> OptimizationRunRecord | None:
        """One run by id, or None."""
        query = select(OptimizationRunRecord).where(col(OptimizationRunRecord.id) == run_id)
        return read_record(
            self.engine, f"read optimization run {run_id}", OptimizationRunRecord, query
        )

    def list(self, limit: int = 100) -> builtins.list[OptimizationRunRecord]:
        """The most recent runs, newest first."""
        query = (
            select(OptimizationRunRecord)
            .order_by(col(OptimizationRunRecord.created_at).desc())
            .limit(limit)
        )
        return read_records(self.engine, "list optimization runs", OptimizationRunRecord, query)

    def update(self, run_id: str, **values: Any) -> bool:
        """Change an unfinished run (status, checkpoint, scores...); False if it had ended.

        A final status given here also sets ``finished_at``.
        """
        values["updated_at"] = utcnow()
        if values.get("status") in TERMINAL_RUN_STATUSES:
            values["finished_at"] = values["updated_at"]
        with write_transaction(self.engine, f"update optimization run {run_id}") as conn:
            result = conn.execute(
                update(OptimizationRunRecord)
                .where(col(OptimizationRunRecord.id) == run_id)
                .where(col(OptimizationRunRecord.status).not_in(sorted(TERMINAL_RUN_STATUSES)))
                .values(**values)
            )
            return bool(result.rowcount)

    def cancel(self, run_id: str, reason: str = "cancelled by the client") -> bool:
        """Mark an unfinished run cancelled; False if it had already ended."""
        return self.update(run_id, status="cancelled", stop_reason=reason)
