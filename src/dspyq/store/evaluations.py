"""The ``evaluations`` and ``evaluation_rows`` tables: one distributed evaluation and
the score of each of its examples.

The client opens the evaluation (status ``running``) before any example is enqueued and
closes it with the final score, writing the rows of the examples scored in batches in one
statement; an example sent on its own message records its row on the worker.
Rows are keyed by (evaluation, example index), so a redelivered example overwrites its
own row instead of adding a second one.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from dspyq.store.columns import utcnow
from dspyq.store.engine import (
    EngineStore,
    dialect_insert,
    insert_once,
    read_connection,
    read_record,
    write_transaction,
)
from dspyq.store.models import EvaluationRecord, EvaluationRowRecord


class EvaluationStore(EngineStore):
    """Reads and writes evaluations and their per-example rows through ``engine``."""

    def open(
        self, evaluation_id: str, correlation_id: str, program: str, metric: str, lm: str, n: int
    ) -> EvaluationRecord:
        """Record an evaluation about to start; reopening an existing id changes nothing."""
        with write_transaction(self.engine, f"record evaluation {evaluation_id}") as conn:
            row = {
                "id": evaluation_id,
                "correlation_id": correlation_id,
                "program": program,
                "metric": metric,
                "lm": lm,
                "status": "running",
                "n": n,
                "errors": 0,
                "created_at": utcnow(),
            }
            conn.execute(insert_once(conn, EvaluationRecord, "id", row))
        found = self.get(evaluation_id)
        assert found is not None  # just written in a committed transaction
        return found

    def record_row(
        self,
        evaluation_id: str,
        index: int,
        task_id: str,
        score: float | None,
        error: dict[str, Any] | None,
    ) -> None:
        """Record (or overwrite) the outcome of example ``index`` of an evaluation."""
        values = {"task_id": task_id, "score": score, "error": error}
        with write_transaction(self.engine, f"record row {index} of {evaluation_id}") as conn:
            statement = dialect_insert(conn, EvaluationRowRecord).values(
                evaluation_id=evaluation_id, example_index=index, **values
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["evaluation_id", "example_index"], set_=values
                )
            )

    def record_rows(
        self,
        evaluation_id: str,
        rows: Sequence[tuple[int, str, float | None, dict[str, Any] | None]],
    ) -> None:
        """Record (or overwrite) many rows at once: (index, task id, score, error) each."""
        if not rows:
            return
        values = [
            {
                "evaluation_id": evaluation_id,
                "example_index": index,
                "task_id": task_id,
                "score": score,
                "error": error,
            }
            for index, task_id, score, error in rows
        ]
        with write_transaction(self.engine, f"record rows of {evaluation_id}") as conn:
            statement = dialect_insert(conn, EvaluationRowRecord)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["evaluation_id", "example_index"],
                    set_={name: statement.excluded[name] for name in ("task_id", "score", "error")},
                ),
                values,
            )

    def finish(
        self, evaluation_id: str, *, score: float | None, errors: int, status: str = "succeeded"
    ) -> None:
        """Close an evaluation with its final score (percentage) and error count."""
        with write_transaction(self.engine, f"finish evaluation {evaluation_id}") as conn:
            conn.execute(
                update(EvaluationRecord)
                .where(col(EvaluationRecord.id) == evaluation_id)
                .values(score=score, errors=errors, status=status, finished_at=utcnow())
            )

    def get(self, evaluation_id: str) -> EvaluationRecord | None:
        """One evaluation by id, or None."""
        query = select(EvaluationRecord).where(col(EvaluationRecord.id) == evaluation_id)
        return read_record(self.engine, f"read evaluation {evaluation_id}", EvaluationRecord, query)

    def rows(self, evaluation_id: str) -> builtins.list[EvaluationRowRecord]:
        """The recorded rows of an evaluation, in devset order."""
        with read_connection(self.engine, f"read rows of evaluation {evaluation_id}") as conn:
            found = (
                conn.execute(
                    select(EvaluationRowRecord)
                    .where(col(EvaluationRowRecord.evaluation_id) == evaluation_id)
                    .order_by(col(EvaluationRowRecord.example_index))
                )
                .mappings()
                .all()
            )
        return [EvaluationRowRecord.model_validate(dict(row)) for row in found]

    def list(self, limit: int = 100) -> builtins.list[EvaluationRecord]:
        """The most recent evaluations, newest first."""
        with read_connection(self.engine, "list evaluations") as conn:
            found = (
                conn.execute(
                    select(EvaluationRecord)
                    .order_by(col(EvaluationRecord.created_at).desc())
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [EvaluationRecord.model_validate(dict(row)) for row in found]
