"""The ``executions`` table: one row per module execution, keyed by its task id.

Celery may deliver a task more than once (``acks_late``), so every write here is
idempotent and follows the moves of :mod:`dspyq.store.states`: a succeeded row is
final, a failed row never goes back to running, and of several workers finishing the
same task only the first records it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, select, update
from sqlmodel import col

from dspyq.errors import StoreError
from dspyq.store.columns import utcnow
from dspyq.store.engine import EngineStore, insert_once, read_connection, write_transaction
from dspyq.store.models import ExecutionRecord, ExecutionStatus
from dspyq.store.states import can_move


class ExecutionStore(EngineStore):
    """Reads and writes execution records through ``engine``."""

    def create_pending(
        self,
        task_id: str,
        correlation_id: str | None,
        program: str | None,
        module_type: str | None,
        lm: str | None,
        inputs: dict[str, Any] | None,
        parent_id: str | None = None,
    ) -> ExecutionRecord:
        """Record a submitted execution; if ``task_id`` exists, return its row unchanged."""
        with write_transaction(self.engine, f"record execution {task_id}") as conn:
            row = {
                "task_id": task_id,
                "correlation_id": correlation_id,
                "parent_id": parent_id,
                "status": "pending",
                "program": program,
                "module_type": module_type,
                "lm": lm,
                "inputs": inputs,
                "created_at": utcnow(),
            }
            conn.execute(insert_once(conn, ExecutionRecord, "task_id", row))
            return _require(_select(conn, task_id), task_id)

    def mark_running(
        self, task_id: str, node: str | None, *, correlation_id: str | None = None
    ) -> bool:
        """Record that an attempt started on ``node``; counts the attempt.

        Returns False, changing nothing, if the execution already succeeded or failed.
        A task never recorded as pending gets its row now (``correlation_id`` fills it).
        """
        now = utcnow()
        started = {"status": "running", "node": node, "started_at": now}
        return self._move(
            task_id,
            "running",
            {"correlation_id": correlation_id, "created_at": now, "attempts": 1, **started},
            lambda _current: {**started, "attempts": col(ExecutionRecord.attempts) + 1},
        )

    def mark_succeeded(
        self,
        task_id: str,
        outputs: dict[str, Any],
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
        lm_calls: int = 0,
        *,
        duration_ms: float | None = None,
        correlation_id: str | None = None,
        node: str | None = None,
    ) -> bool:
        """Record the outputs and usage of the execution; the first caller wins.

        Returns False and changes nothing if it already succeeded (a redelivered task
        finishing again). Overrides an earlier failure. Creates the row if the task was
        never recorded. ``duration_ms`` defaults to the time since the attempt started.
        """
        return self._finish(
            task_id,
            "succeeded",
            success_columns(outputs, input_tokens, output_tokens, cost_usd, lm_calls),
            duration_ms=duration_ms,
            correlation_id=correlation_id,
            node=node,
        )

    def mark_failed(
        self,
        task_id: str,
        error_dict: dict[str, Any],
        *,
        duration_ms: float | None = None,
        correlation_id: str | None = None,
        node: str | None = None,
    ) -> bool:
        """Record that the execution failed with ``error_dict`` (``DspyqError.to_dict()``).

        Returns False and changes nothing if it already succeeded: a success is never
        overwritten. Creates the row if the task was never recorded.
        """
        return self._finish(
            task_id,
            "failed",
            {"error": error_dict},
            duration_ms=duration_ms,
            correlation_id=correlation_id,
            node=node,
        )

    def _finish(
        self,
        task_id: str,
        status: Literal["succeeded", "failed"],
        columns: dict[str, Any],
        *,
        duration_ms: float | None,
        correlation_id: str | None,
        node: str | None,
    ) -> bool:
        """Write the final ``status`` and its ``columns`` unless the task already succeeded.

        Success and failure share one rule, so a redelivered task can never undo a
        success: True if this call wrote the row, False if a success was already there.
        """
        now = utcnow()
        values: dict[str, Any] = {"status": status, **columns, "finished_at": now}
        if node is not None:
            values["node"] = node
        new_row = {"correlation_id": correlation_id, "created_at": now, "attempts": 1}
        return self._move(
            task_id,
            status,
            {**new_row, "duration_ms": duration_ms, **values},
            lambda current: {
                **values,
                "duration_ms": _duration_ms(current.started_at, now, duration_ms),
            },
        )

    def _move(
        self,
        task_id: str,
        target: ExecutionStatus,
        new_row: dict[str, Any],
        changes: Callable[[ExecutionRecord], dict[str, Any]],
    ) -> bool:
        """Move ``task_id``'s row to ``target`` if :mod:`dspyq.store.states` allows it.

        A task never recorded gets ``new_row`` as its row. Otherwise the row is locked
        and, if the move is legal, updated with ``changes(row)``. True if this call wrote
        the row, False if the move was refused (nothing changed).
        """
        with write_transaction(self.engine, f"mark execution {task_id} {target}") as conn:
            current = _lock_or_insert(conn, task_id, **new_row)
            if current is None:
                return True
            if not can_move(current.status, target):
                return False
            conn.execute(_update(task_id).values(**changes(current)))
            return True

    def get(self, task_id: str) -> ExecutionRecord | None:
        """The execution recorded for ``task_id``, or None."""
        with read_connection(self.engine, f"read execution {task_id}") as conn:
            return _select(conn, task_id)

    def list(
        self,
        correlation_id: str | None = None,
        status: ExecutionStatus | None = None,
        limit: int = 100,
    ) -> builtins.list[ExecutionRecord]:
        """Executions in the order they were created, optionally filtered."""
        query = select(ExecutionRecord).order_by(
            col(ExecutionRecord.created_at), col(ExecutionRecord.id)
        )
        if correlation_id is not None:
            query = query.where(col(ExecutionRecord.correlation_id) == correlation_id)
        if status is not None:
            query = query.where(col(ExecutionRecord.status) == status)
        with read_connection(self.engine, "list executions") as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [ExecutionRecord.model_validate(dict(row)) for row in rows]


SUCCESS_COLUMNS = ("outputs", "error", "input_tokens", "output_tokens", "cost_usd", "lm_calls")
"""The columns a success writes besides its status, node and times."""


def success_columns(
    outputs: dict[str, Any],
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost_usd: float = 0.0,
    lm_calls: int = 0,
) -> dict[str, Any]:
    """:data:`SUCCESS_COLUMNS` and their values (a success clears the error)."""
    values = (outputs, None, input_tokens, output_tokens, cost_usd, lm_calls)
    return dict(zip(SUCCESS_COLUMNS, values, strict=True))


def _select(conn: Connection, task_id: str, *, lock: bool = False) -> ExecutionRecord | None:
    query = select(ExecutionRecord).where(col(ExecutionRecord.task_id) == task_id)
    if lock:
        # Row lock on PostgreSQL; SQLite already holds the database write lock.
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else ExecutionRecord.model_validate(dict(row))


def _require(record: ExecutionRecord | None, task_id: str) -> ExecutionRecord:
    if record is None:
        raise StoreError(f"execution {task_id} vanished while being written")
    return record


def _update(task_id: str) -> Any:
    return update(ExecutionRecord).where(col(ExecutionRecord.task_id) == task_id)


def _lock_or_insert(conn: Connection, task_id: str, **values: Any) -> ExecutionRecord | None:
    """Lock and return the row of ``task_id``, or insert ``values`` as it and return None.

    ``values`` must include ``created_at``, so the new row is stamped by its caller's clock.

    Two writers racing to insert the same new task: the loser's insert does nothing
    (it waits for the winner's commit on PostgreSQL), and it then reads the winner's row.
    """
    current = _select(conn, task_id, lock=True)
    if current is not None:
        return current
    row = {"task_id": task_id, **values}
    # RETURNING says whether a row was inserted; rowcount is unreliable with it on PG.
    inserted = conn.execute(
        insert_once(conn, ExecutionRecord, "task_id", row).returning(col(ExecutionRecord.id))
    )
    if inserted.first() is not None:
        return None
    return _require(_select(conn, task_id, lock=True), task_id)


def _duration_ms(started_at: datetime | None, now: datetime, given: float | None) -> float | None:
    if given is not None:
        return given
    if started_at is None:
        return None
    return (now - started_at).total_seconds() * 1000.0
