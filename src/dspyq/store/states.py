"""The states of an execution and the moves between them: one rule for every writer.

Celery may deliver a task more than once (``acks_late``), so the moves are monotonic:

- ``pending`` -> ``running``, ``succeeded``, ``failed``
- ``running`` -> ``running`` (the next attempt), ``succeeded``, ``failed``
- ``failed`` -> ``succeeded`` (a success wins over a failure), ``failed`` (a later error)
- ``succeeded``: final

A failed row never goes back to running, and nothing overwrites a success. ``pending``
is only ever a new row's state; a worker that writes a task it never saw submitted
creates its row in whatever state it writes.

:class:`~dspyq.store.ExecutionStore` checks a locked row with :func:`can_move`;
:class:`~dspyq.store.attempts.AttemptRecorder` puts :func:`may_move_sql` in the
``WHERE`` of its upserts. Both read :data:`ENTERED_FROM`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_
from sqlalchemy.sql.elements import ColumnElement

from dspyq.store.models import EXECUTION_STATUSES, ExecutionStatus

__all__ = ["ENTERED_FROM", "EXECUTION_STATUSES", "blocked_from", "can_move", "may_move_sql"]

ENTERED_FROM: Mapping[ExecutionStatus, frozenset[ExecutionStatus]] = {
    "pending": frozenset(),
    "running": frozenset({"pending", "running"}),
    "succeeded": frozenset({"pending", "running", "failed"}),
    "failed": frozenset({"pending", "running", "failed"}),
}
"""For each state, the states a stored row may move to it from."""


def can_move(current: str, target: ExecutionStatus) -> bool:
    """Whether a row in ``current`` may move to ``target``."""
    return current in ENTERED_FROM[target]


def blocked_from(target: ExecutionStatus) -> tuple[ExecutionStatus, ...]:
    """The states a row may not move to ``target`` from, in :data:`EXECUTION_STATUSES`
    order."""
    return tuple(state for state in EXECUTION_STATUSES if state not in ENTERED_FROM[target])


def may_move_sql(status: Any, target: ExecutionStatus) -> ColumnElement[bool]:
    """The SQL condition on the ``status`` column under which a row may move to
    ``target`` (``status != 'succeeded' AND ...``: plain comparisons, so a statement
    compiled once runs with its parameters as they are)."""
    return and_(*(status != state for state in blocked_from(target)))
