"""The ``lm_requests`` table: every LM call with its tokens, cost and latency.

Like ``llm``'s log, it answers "what did this job cost and where did the time go";
recording is idempotent by ``request_id`` so a retried task does not count twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlmodel import col

from dspyq.store.columns import utcnow
from dspyq.store.engine import (
    EngineStore,
    dialect_insert,
    read_connection,
    read_records,
    write_transaction,
)
from dspyq.store.models import LMRequestRecord, LMRequestStatus


@dataclass(frozen=True)
class LMUsage:
    """Totals over a set of LM requests."""

    requests: int
    cache_hits: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


def insert_lm_requests(conn: Connection) -> Any:
    """An INSERT of :meth:`LMRequestStore.row` rows that skips requests already stored."""
    return dialect_insert(conn, LMRequestRecord).on_conflict_do_nothing(
        index_elements=["request_id"]
    )


class LMRequestStore(EngineStore):
    """Records and sums LM requests through ``engine``."""

    @staticmethod
    def row(
        request_id: str,
        *,
        model: str,
        provider: str | None = None,
        correlation_id: str | None = None,
        task_id: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
        duration_ms: float | None = None,
        cache_hit: bool = False,
        status: LMRequestStatus = "succeeded",
        error: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> dict[str, Any]:
        """The ``lm_requests`` row of one LM request, to store now or with a job's records."""
        return {
            "request_id": request_id,
            "correlation_id": correlation_id,
            "task_id": task_id,
            "provider": provider,
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": cost_usd,
            "duration_ms": duration_ms,
            "cache_hit": cache_hit,
            "status": status,
            "error": error,
            "created_at": created_at or utcnow(),
        }

    def record(self, request_id: str, **fields: Any) -> bool:
        """Store one LM request (fields as :meth:`row`); False if ``request_id`` was stored."""
        return self.record_row(self.row(request_id, **fields))

    def record_row(self, row: dict[str, Any]) -> bool:
        """Store a row built by :meth:`row`; returns False if its request was already stored."""
        with write_transaction(self.engine, f"record LM request {row['request_id']}") as conn:
            result = conn.execute(
                insert_lm_requests(conn).values(row).returning(col(LMRequestRecord.id))
            )
            return result.first() is not None

    def by_correlation(self, correlation_id: str) -> list[LMRequestRecord]:
        """The LM requests of one job, oldest first."""
        query = (
            select(LMRequestRecord)
            .where(col(LMRequestRecord.correlation_id) == correlation_id)
            .order_by(col(LMRequestRecord.created_at), col(LMRequestRecord.id))
        )
        return read_records(
            self.engine, f"read LM requests of {correlation_id}", LMRequestRecord, query
        )

    def usage(self, *, correlation_id: str | None = None, task_id: str | None = None) -> LMUsage:
        """Request count, cache hits, tokens and cost, for one job, one task, or all."""
        query = select(
            func.count(),
            func.count().filter(col(LMRequestRecord.cache_hit).is_(True)),
            func.coalesce(func.sum(col(LMRequestRecord.input_tokens)), 0),
            func.coalesce(func.sum(col(LMRequestRecord.output_tokens)), 0),
            func.coalesce(func.sum(col(LMRequestRecord.cost_usd)), 0.0),
        ).select_from(LMRequestRecord)
        if correlation_id is not None:
            query = query.where(col(LMRequestRecord.correlation_id) == correlation_id)
        if task_id is not None:
            query = query.where(col(LMRequestRecord.task_id) == task_id)
        with read_connection(self.engine, "sum LM usage") as conn:
            requests, hits, tokens_in, tokens_out, cost = conn.execute(query).one()
        return LMUsage(int(requests), int(hits), int(tokens_in), int(tokens_out), float(cost))
