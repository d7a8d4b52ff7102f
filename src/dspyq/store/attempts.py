"""An attempt at an execution, recorded with its events in one transaction at each end.

A worker records every attempt twice: when it starts (the row goes to ``running``, the
attempt is counted, a start event is stored) and when it succeeds (outputs and usage,
the completion event, and the ``lm_request`` events and ``lm_requests`` rows the job
held back while it ran). :class:`AttemptRecorder` writes each of these as a single
transaction of two statements, where :class:`~dspyq.store.ExecutionStore` and
:class:`~dspyq.store.EventStore` would take four transactions and two reads: on a
busy worker those writes are most of what a job costs besides its LM calls.

The rules are theirs (:mod:`dspyq.store.states`), so delivery at least once still
records once: a succeeded row is final, a failed row does not go back to running,
events are stored once by ``event_id``. The statements are built once per dialect, so they are compiled
once rather than for each job: a batch's starts are one multi-row upsert ``RETURNING``
each attempt; a success and its events and rows go straight to the driver
(:mod:`dspyq.store.driver`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, select
from sqlmodel import col

from dspyq.events import DEFAULT_MAX_DATA_BYTES, Event
from dspyq.store.columns import utcnow
from dspyq.store.driver import DriverStatement
from dspyq.store.engine import dialect_insert, write_transaction
from dspyq.store.events import EventStore
from dspyq.store.executions import SUCCESS_COLUMNS, ExecutionStore, success_columns
from dspyq.store.group_commit import GroupCommit
from dspyq.store.lm_requests import insert_lm_requests
from dspyq.store.models import EventRecord, ExecutionRecord
from dspyq.store.states import may_move_sql

__all__ = ["AfterCommit", "AttemptRecorder", "AttemptStart", "PendingStart", "pending_start"]

W = TypeVar("W")
R = TypeVar("R")


@dataclass(frozen=True)
class AttemptStart:
    """What :meth:`AttemptRecorder.start` found and did.

    ``record`` is the stored row when the execution had already succeeded (the caller
    returns its outputs and runs nothing); otherwise ``attempt`` is the attempt's number.
    """

    attempt: int
    record: ExecutionRecord | None = None

    @property
    def already_succeeded(self) -> bool:
        return self.record is not None


@dataclass(frozen=True)
class _Statements:
    start: Any
    succeed: DriverStatement  # the rows every job writes go straight to the driver
    events: DriverStatement
    lm_requests: DriverStatement


@dataclass(frozen=True)
class PendingStart:
    """An attempt about to start, as :func:`pending_start` describes it."""

    task_id: str
    node: str | None
    start_event: Callable[[int], Event]
    row: dict[str, Any]


def pending_start(
    task_id: str,
    node: str | None,
    start_event: Callable[[int], Event],
    *,
    correlation_id: str | None = None,
    parent_id: str | None = None,
    program: str | None = None,
    module_type: str | None = None,
    lm: str | None = None,
    inputs: dict[str, Any] | None = None,
    program_name: str | None = None,
    program_version: int | None = None,
) -> PendingStart:
    """What :meth:`AttemptRecorder.start` records, to record later or with others."""
    now = utcnow()
    row = {
        "task_id": task_id,
        "correlation_id": correlation_id,
        "parent_id": parent_id,
        "program": program,
        "module_type": module_type,
        "lm": lm,
        "inputs": inputs,
        "program_name": program_name,
        "program_version": program_version,
        "status": "running",
        "attempts": 1,
        "node": node,
        "started_at": now,
        "created_at": now,
    }
    return PendingStart(task_id, node, start_event, row)


@dataclass(frozen=True)
class AfterCommit:
    """What to do once a success is committed: ``run(items)``, given this ``item``.

    The successes committed together run their ``run`` once, with all their items (a
    batch's results go to Redis in one round trip, by the thread that committed them).
    """

    run: Callable[[list[Any]], object]
    item: Any


@dataclass(frozen=True)
class _Success:
    task_id: str
    row: dict[str, Any]
    events: Sequence[Event]
    lm_requests: Sequence[dict[str, Any]]
    after: AfterCommit | None = None


class AttemptRecorder:
    """Records attempts of executions and their events through ``engine``.

    With ``grouped=True`` (what workers use) starts and successes that arrive together
    from several threads are written in one transaction
    (:class:`~dspyq.store.group_commit.GroupCommit`); each call still returns only once
    its own records are committed.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_data_bytes: int = DEFAULT_MAX_DATA_BYTES,
        grouped: bool = False,
    ) -> None:
        self.engine = engine
        self.executions = ExecutionStore(engine)
        self._events = EventStore(engine, max_data_bytes=max_data_bytes)
        self._statements: dict[str, _Statements] = {}
        start_one, succeed_one = _alone(self._start_many), _alone(self._succeed_many)
        self._start: Callable[[PendingStart], AttemptStart] = start_one
        self._succeed: Callable[[_Success], bool] = succeed_one
        if grouped:
            self._start = GroupCommit(self._start_many, start_one, name="starts")
            self._succeed = GroupCommit(self._succeed_many, succeed_one, name="successes")

    def start(
        self,
        task_id: str,
        node: str | None,
        start_event: Callable[[int], Event],
        **description: Any,
    ) -> AttemptStart:
        """Mark ``task_id`` running, count the attempt and store ``start_event(attempt)``.

        As :meth:`ExecutionStore.create_pending` then :meth:`ExecutionStore.mark_running`:
        a new task gets its row (attempt 1) described by the keyword arguments (those of
        :func:`pending_start`), a pending or running one keeps its description and gets
        its next attempt; a failed one stays failed and keeps its count (the attempt runs
        again, its start event is not stored twice). An execution that already succeeded
        is left alone and comes back as ``record``.
        """
        return self.begin(pending_start(task_id, node, start_event, **description))

    def begin(self, start: PendingStart) -> AttemptStart:
        """:meth:`start` for an attempt described beforehand (see :func:`pending_start`)."""
        return self._start(start)

    def begin_many(self, starts: Sequence[PendingStart]) -> list[AttemptStart]:
        """Start several attempts in one transaction (a batch's jobs, all at once)."""
        return self._start_many(starts) if starts else []

    def succeed(
        self,
        task_id: str,
        outputs: dict[str, Any],
        events: Sequence[Event] = (),
        *,
        lm_requests: Sequence[dict[str, Any]] = (),
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
        lm_calls: int = 0,
        duration_ms: float,
        correlation_id: str | None = None,
        node: str | None = None,
        after: AfterCommit | None = None,
    ) -> bool:
        """Record the outputs and usage and store ``events``; the first success wins.

        As :meth:`ExecutionStore.mark_succeeded`: returns False and leaves the row as it
        is if the execution already succeeded; overrides a failure; creates the row if
        the task was never recorded. ``events`` and ``lm_requests`` rows (as built by
        :meth:`LMRequestStore.row`) are stored either way, once by id. ``after`` runs
        once they are committed, before this returns; if it raises, so does this (the
        records stay committed).
        """
        now = utcnow()
        row = {
            "task_id": task_id,
            "correlation_id": correlation_id,
            "status": "succeeded",
            **success_columns(outputs, input_tokens, output_tokens, cost_usd, lm_calls),
            "attempts": 1,
            "node": node,
            "created_at": now,
            "finished_at": now,
            "duration_ms": duration_ms,
        }
        return self._succeed(_Success(task_id, row, events, lm_requests, after))

    def record(
        self, events: Sequence[Event] = (), lm_requests: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Store ``events`` and ``lm_requests`` rows in one transaction (each once by id).

        What a job that does not succeed writes of the records it held back.
        """
        if not events and not lm_requests:
            return
        with write_transaction(self.engine, f"record {len(events)} events") as conn:
            self._append(conn, self._for(conn), events, lm_requests)

    # --- one transaction for one write, or for a group of them ------------------------------

    def _start_many(self, starts: Sequence[PendingStart]) -> list[AttemptStart]:
        action = _action(starts, "start execution {}", "start {} executions")
        with write_transaction(self.engine, action) as conn:
            statements = self._for(conn)
            begun = self._start_all(conn, statements, starts)
            events = [
                start.start_event(attempt.attempt)
                for start, attempt in zip(starts, begun, strict=True)
                if attempt.record is None
            ]
            self._append(conn, statements, events)
            return begun

    def _start_all(
        self, conn: Connection, statements: _Statements, starts: Sequence[PendingStart]
    ) -> list[AttemptStart]:
        """One upsert for all of ``starts`` (distinct task ids), their attempts in order."""
        if len({start.task_id for start in starts}) < len(starts):
            return [self._start_all(conn, statements, [start])[0] for start in starts]
        returned = conn.execute(statements.start, [start.row for start in starts])
        attempts: dict[str, int] = {task_id: int(count) for task_id, count in returned}
        return [self._started(conn, start, attempts.get(start.task_id)) for start in starts]

    def _started(self, conn: Connection, start: PendingStart, attempt: int | None) -> AttemptStart:
        if attempt is None:  # already succeeded or failed: the upsert changed nothing
            current = self._current(conn, start.task_id)
            if current.status == "succeeded":
                return AttemptStart(attempt=current.attempts, record=current)
            attempt = current.attempts
        return AttemptStart(attempt=attempt)

    def _succeed_many(self, successes: Sequence[_Success]) -> list[bool]:
        action = _action(successes, "mark execution {} succeeded", "mark {} executions succeeded")
        with write_transaction(self.engine, action) as conn:
            statements = self._for(conn)
            firsts = [statements.succeed.execute(conn, success.row) == 1 for success in successes]
            self._append(
                conn,
                statements,
                [event for success in successes for event in success.events],
                [row for success in successes for row in success.lm_requests],
            )
        _run_after(successes)
        return firsts

    # --- internals ------------------------------------------------------------------------

    def _append(
        self,
        conn: Connection,
        statements: _Statements,
        events: Sequence[Event],
        lm_requests: Sequence[dict[str, Any]] = (),
    ) -> None:
        if events:
            statements.events.execute_many(conn, [self._events._row(event) for event in events])
        if lm_requests:
            statements.lm_requests.execute_many(conn, lm_requests)

    def _current(self, conn: Connection, task_id: str) -> ExecutionRecord:
        query = select(ExecutionRecord).where(col(ExecutionRecord.task_id) == task_id)
        return ExecutionRecord.model_validate(dict(conn.execute(query).mappings().one()))

    def _for(self, conn: Connection) -> _Statements:
        name = conn.dialect.name
        statements = self._statements.get(name)
        if statements is None:
            statements = self._statements[name] = _build(conn)
        return statements


def _alone(many: Callable[[Sequence[W]], list[R]]) -> Callable[[W], R]:
    """``many`` for one write in a transaction of its own."""
    return lambda write: many([write])[0]


def _action(writes: Sequence[PendingStart] | Sequence[_Success], one: str, many: str) -> str:
    """What a transaction does, for its error messages: ``one`` names the one task,
    ``many`` counts the tasks."""
    return one.format(writes[0].task_id) if len(writes) == 1 else many.format(len(writes))


def _run_after(successes: Sequence[_Success]) -> None:
    """Each ``after`` of ``successes`` (committed), once per function with all its items.

    If one fails, the group is written again one success at a time (idempotent), so the
    error reaches only the callers it concerns.
    """
    groups: dict[Callable[[list[Any]], object], list[Any]] = {}
    for success in successes:
        if success.after is not None:
            groups.setdefault(success.after.run, []).append(success.after.item)
    for run, items in groups.items():
        run(items)


def _build(conn: Connection) -> _Statements:
    status = col(ExecutionRecord.status)
    running = dialect_insert(conn, ExecutionRecord)
    start = running.on_conflict_do_update(
        index_elements=["task_id"],
        set_={
            "status": "running",
            "attempts": col(ExecutionRecord.attempts) + 1,
            "node": running.excluded.node,
            "started_at": running.excluded.started_at,
            # A job by reference that starts again may be served by another version.
            "program_name": func.coalesce(
                running.excluded.program_name, col(ExecutionRecord.program_name)
            ),
            "program_version": func.coalesce(
                running.excluded.program_version, col(ExecutionRecord.program_version)
            ),
        },
        where=may_move_sql(status, "running"),
    ).returning(col(ExecutionRecord.task_id), col(ExecutionRecord.attempts))
    done = dialect_insert(conn, ExecutionRecord)
    succeed = done.on_conflict_do_update(
        index_elements=["task_id"],
        set_={
            name: getattr(done.excluded, name)
            for name in ("status", *SUCCESS_COLUMNS, "finished_at", "duration_ms")
        }
        | {"node": _coalesce_node(done)},
        where=may_move_sql(status, "succeeded"),
    )
    events = dialect_insert(conn, EventRecord).on_conflict_do_nothing(index_elements=["event_id"])
    return _Statements(
        start=start,
        succeed=DriverStatement(succeed),
        events=DriverStatement(events),
        lm_requests=DriverStatement(insert_lm_requests(conn)),
    )


def _coalesce_node(insert: Any) -> Any:
    """The new node if one was given, else the row's (as mark_succeeded's ``node=None``)."""
    return func.coalesce(insert.excluded.node, col(ExecutionRecord.node))
