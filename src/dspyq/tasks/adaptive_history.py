"""The AdaptiveOptimizer's memory in SQL: past runs of a program, and its own outcomes.

Two sources: the ``adaptive_optimization_completed`` events (scores before and after,
recorded by every adaptive run, in-process or on the queue), and the queue's
``optimization_runs`` of the same program (its fingerprint, computed from the spec in
the run's plan), whose gain is the best score over the first candidate's when the run
scored several candidates.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import col

from dspyq.events import Event
from dspyq.optimize.adaptive import COMPLETED, HistoryEntry, program_fingerprint
from dspyq.settings import get_settings
from dspyq.store.engine import init_db, make_engine, read_connection
from dspyq.store.events import EventStore
from dspyq.store.models import EventRecord, OptimizationRunRecord

__all__ = ["SQLOptimizationHistory"]

_LIMIT = 500
"""Most recent runs of each source read: the choice needs the recent past, not all of it."""


class SQLOptimizationHistory:
    """:class:`~dspyq.optimize.adaptive.OptimizationHistory` over ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events = EventStore(engine)

    @classmethod
    def from_settings(cls) -> SQLOptimizationHistory:
        engine = make_engine(get_settings().database_url)
        init_db(engine)
        return cls(engine)

    def emit(
        self, event_type: str, correlation_id: str, data: dict[str, Any], suffix: str = ""
    ) -> None:
        suffix = event_type.rsplit("_", 1)[-1] + suffix
        self.events.append(
            Event(
                event_id=f"{correlation_id}:{suffix}",
                event_type=event_type,
                correlation_id=correlation_id,
                data=data,
            )
        )

    def entries(self, fingerprint: str) -> list[HistoryEntry]:
        events = (
            select(col(EventRecord.data))
            .where(col(EventRecord.event_type) == COMPLETED)
            .order_by(col(EventRecord.id).desc())
            .limit(_LIMIT)
        )
        runs = (
            select(OptimizationRunRecord)
            .order_by(col(OptimizationRunRecord.created_at).desc())
            .limit(_LIMIT)
        )
        with read_connection(self.engine, "read the optimization history") as conn:
            recorded = [dict(data) for (data,) in conn.execute(events)]
            rows = [
                OptimizationRunRecord.model_validate(dict(r)) for r in conn.execute(runs).mappings()
            ]
        found: list[HistoryEntry] = []
        adaptive_runs = set()
        for data in recorded:  # newest first: a run's later, better-scored outcome wins
            if data.get("fingerprint") != fingerprint:
                continue
            if data.get("run_id") is not None and data.get("run_id") in adaptive_runs:
                continue
            adaptive_runs.add(data.get("run_id"))
            found.append(
                HistoryEntry(
                    optimizer=str(data.get("strategy")),
                    trainset_size=int(data.get("trainset_size") or 0),
                    baseline_score=_number(data.get("baseline_score")),
                    final_score=_number(data.get("final_score")),
                    cost_usd=float(data.get("cost_usd") or 0.0),
                    run_id=data.get("run_id"),
                )
            )
        for run in rows:
            if run.id in adaptive_runs or run.status not in ("succeeded", "budget_exhausted"):
                continue
            config = run.config or {}
            if program_fingerprint(config.get("program") or {}) != fingerprint:
                continue
            found.append(_run_entry(run, config))
        return found


def _run_entry(run: OptimizationRunRecord, config: dict[str, Any]) -> HistoryEntry:
    checkpoint = run.checkpoint or {}
    scores = [
        c.get("score")
        for c in sorted(
            checkpoint.get("candidates") or [], key=lambda c: int(c.get("iteration", 0))
        )
        if isinstance(c.get("score"), int | float)
    ]
    return HistoryEntry(
        optimizer=run.optimizer,
        trainset_size=len(config.get("trainset") or []),
        baseline_score=float(scores[0]) if len(scores) > 1 else None,
        final_score=run.best_score,
        cost_usd=float(checkpoint.get("cost_usd") or 0.0),
        run_id=run.id,
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
