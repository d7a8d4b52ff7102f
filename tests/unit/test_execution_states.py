"""The execution state machine alone: which moves are legal, and the SQL condition
derived from them selects exactly the rows the moves allow (on SQLite, in memory)."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, insert, select

from dspyq.store.models import ExecutionStatus
from dspyq.store.states import EXECUTION_STATUSES, blocked_from, can_move, may_move_sql

LEGAL = {
    ("pending", "running"),
    ("pending", "succeeded"),
    ("pending", "failed"),
    ("running", "running"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("failed", "succeeded"),
    ("failed", "failed"),
}


@pytest.mark.parametrize("current", EXECUTION_STATUSES)
@pytest.mark.parametrize("target", EXECUTION_STATUSES)
def test_the_legal_moves(current: str, target: ExecutionStatus) -> None:
    assert can_move(current, target) == ((current, target) in LEGAL)


def test_a_success_is_final_and_a_failure_never_runs_again() -> None:
    assert not any(can_move("succeeded", target) for target in EXECUTION_STATUSES)
    assert not can_move("failed", "running")
    assert blocked_from("running") == ("succeeded", "failed")
    assert blocked_from("succeeded") == ("succeeded",)


@pytest.mark.parametrize("target", EXECUTION_STATUSES)
def test_the_sql_condition_selects_the_rows_that_may_move(target: ExecutionStatus) -> None:
    table = Table("t", MetaData(), Column("status", String))
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), [{"status": status} for status in EXECUTION_STATUSES])
        query = select(table.c.status).where(may_move_sql(table.c.status, target))
        movable = {row.status for row in conn.execute(query)}
    assert movable == {s for s in EXECUTION_STATUSES if can_move(s, target)}
