"""The client's side of a batched evaluation: outcomes taken as they arrive, stragglers hedged.

Each example has its own task id in the result backend (it travels in a batch message
but its outcome is stored under its id as soon as it is scored), so outcomes are taken
one by one with Celery's ``join_native`` over the examples still out, for the progress
bar and the running metric.

Stragglers: once all but the slowest 1% of the examples are in (at ``t99`` since the
send), an example still out at ``max(HEDGE_FACTOR * t99, t99 + HEDGE_FLOOR_S)`` is sent
again as a message of its own under a new task id. Whichever copy ends first is the
example's outcome; the other is cancelled and its outcome ignored, so the example is
counted and recorded once.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, ResultSet

from dspyq.errors import DspyqError
from dspyq.tasks.cancel import cancel_job
from dspyq.tasks.protocol import EVALUATE_TASK, BatchItem, ExampleOutcome, lm_queue

HEDGE_FACTOR = 2.0
"""A straggler is hedged once it has been out this many times as long as the first 99%."""

HEDGE_FLOOR_S = 5.0
"""... and at least this long after the first 99% came in."""

_SLICE_S = 0.25
"""How long one wait for outcomes lasts before stragglers are looked at again."""


class Outcomes:
    """The outcomes of an evaluation's examples, by index, as their tasks end."""

    def __init__(self, app: Celery, items: list[BatchItem], provider: str) -> None:
        self.app = app
        self.items = items
        self.queue = lm_queue(provider)
        self.outcomes: list[ExampleOutcome | None] = [None] * len(items)
        self._index_of = {item.task_id: index for index, item in enumerate(items)}
        self._out = {item.task_id: AsyncResult(item.task_id, app=app) for item in items}
        self._hedged: set[int] = set()
        self._sent = time.monotonic()
        self._t99: float | None = None
        self.hedges = 0

    def collect(self, timeout: float | None, take: Callable[[ExampleOutcome], None]) -> None:
        """Wait for every example, calling ``take`` with each outcome once, in the order
        they end; raises Celery's TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else self._sent + timeout
        need = len(self.items) - max(1, math.floor(len(self.items) / 100))

        def arrived(task_id: str, value: Any) -> None:
            outcome = self._take(task_id, value)
            if outcome is not None:
                if self._t99 is None and self.done >= need:
                    self._t99 = time.monotonic() - self._sent
                take(outcome)

        while self._out:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise CeleryTimeoutError("the evaluation's examples did not all end in time")
            wait = _SLICE_S if left is None else min(_SLICE_S, left)
            try:
                ResultSet(list(self._out.values()), app=self.app).join_native(
                    timeout=wait, propagate=False, callback=arrived, disable_sync_subtasks=False
                )
            except CeleryTimeoutError:
                self._hedge_stragglers()

    @property
    def done(self) -> int:
        return sum(outcome is not None for outcome in self.outcomes)

    def pending(self) -> list[str]:
        """Task ids of the copies still out."""
        return list(self._out)

    def _take(self, task_id: str, value: Any) -> ExampleOutcome | None:
        """The example's outcome if this copy is the first to end; None for the second."""
        self._out.pop(task_id, None)
        index = self._index_of[task_id]
        if self.outcomes[index] is not None:
            return None
        outcome = _outcome(task_id, index, value)
        self.outcomes[index] = outcome
        for other, at in list(self._index_of.items()):  # the other copy, if hedged
            if at == index and other in self._out:
                self._out.pop(other)
                cancel_job(self.app, other)
        return outcome

    def _hedge_stragglers(self) -> None:
        if self._t99 is None:
            return
        elapsed = time.monotonic() - self._sent
        if elapsed < max(HEDGE_FACTOR * self._t99, self._t99 + HEDGE_FLOOR_S):
            return
        for index, outcome in enumerate(self.outcomes):
            if outcome is None and index not in self._hedged:
                self._hedged.add(index)
                self._send_copy(index)

    def _send_copy(self, index: int) -> None:
        item = self.items[index]
        task_id = uuid.uuid4().hex
        self.app.send_task(
            EVALUATE_TASK,
            kwargs={"request": item.request, "scoring": {**(item.scoring or {}), "hedge": True}},
            queue=self.queue,
            task_id=task_id,
            shadow=f"{EVALUATE_TASK}[{index} hedged]",
        )
        self._index_of[task_id] = index
        self._out[task_id] = AsyncResult(task_id, app=self.app)
        self.hedges += 1


def _outcome(task_id: str, index: int, value: Any) -> ExampleOutcome:
    """A finished task's value; a task that failed outright becomes its example's error."""
    if isinstance(value, dict):
        return ExampleOutcome.model_validate(value)
    error = value if isinstance(value, DspyqError) else None
    if error is None:
        error = DspyqError(
            f"example {index} failed: {type(value).__name__}: {value}",
            context={"task_id": task_id, "exception": type(value).__name__},
        )
    return ExampleOutcome(index=index, task_id=task_id, error=error.to_dict())
