"""What a batch message carries: several jobs, each with its own task id (see
:mod:`dspyq.tasks.batch`), and the program spec once when they share it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BATCH_TASK",
    "JOBS_HEADER",
    "MIN_BATCHES",
    "BatchItem",
    "batch_message",
    "batch_size",
    "items_of",
]

BATCH_TASK = "dspyq.execute_batch"

JOBS_HEADER = "dspyq_jobs"
"""Header of a batch message: how many jobs it carries (the worker's prefetch counts
them, see :mod:`dspyq.workers.prefetch`)."""

MIN_BATCHES = 8
"""A map is split into at least this many messages (when it has that many jobs), so a
small map still spreads over the pool's workers instead of landing on one."""


def batch_size(jobs: int, largest: int) -> int:
    """Jobs per message for a map of ``jobs``: at most ``largest``, at least one."""
    return max(1, min(largest, -(-jobs // MIN_BATCHES)))


@dataclass(frozen=True)
class BatchItem:
    """One job of a batch message: its task id and its execution request."""

    task_id: str
    request: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "request": self.request}


def batch_message(items: Sequence[BatchItem]) -> dict[str, Any]:
    """The keyword arguments of a batch message carrying ``items``.

    The program spec, the largest part of a request (an optimized program's demos can
    make it tens of kilobytes), is sent once for the batch when its jobs share it, not
    once per job: the message is encoded, stored and decoded that much smaller.
    """
    program = items[0].request.get("program") if items else None
    if program is None or any(item.request.get("program") != program for item in items):
        return {"jobs": [item.to_json() for item in items]}
    jobs = [{"task_id": item.task_id, "request": _without_program(item.request)} for item in items]
    return {"jobs": jobs, "program": program}


def _without_program(request: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in request.items() if key != "program"}


def items_of(jobs: list[dict[str, Any]], program: dict[str, Any] | None) -> list[BatchItem]:
    """The jobs of a batch message, each with its program (the batch's, when shared)."""
    items = []
    for job in jobs:
        request = job["request"]
        if program is not None and "program" not in request:
            request = {**request, "program": program}  # one spec object for the batch
        items.append(BatchItem(task_id=str(job["task_id"]), request=request))
    return items
