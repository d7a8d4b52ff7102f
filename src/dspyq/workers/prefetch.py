"""A batch message counts as its jobs in a worker's prefetch, not as one message.

Celery lets a worker hold up to ``concurrency`` unacknowledged messages (prefetch
multiplier 1). A message of ``Client.map`` carries up to 20 jobs, so a worker of
concurrency 70 could take 70 batches, 1,400 jobs, while the pool's other workers wait
for work: the end of a large map then runs on one worker, 70 jobs at a time. Here a
worker lowers its prefetch by the jobs its batches still have to run (beyond one per
message, which Celery already counts), and raises it again as those jobs end, so it
holds about as many jobs as it can run at once, takes the next batch while the last
jobs of the current one still run, and leaves the rest in the queue for the others.

Only for execution pools that run tasks in the worker's own process (threads, gevent):
with prefork the batch runs in a child, which cannot reach the consumer's prefetch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import signals

from dspyq.tasks.protocol import JOBS_HEADER

if TYPE_CHECKING:
    from dspyq.tasks.context import WorkerContext

__all__ = ["BatchPrefetch"]


class BatchPrefetch:
    """Lowers the consumer's prefetch count by the unfinished jobs of held batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining: dict[str, int] = {}  # batch message id -> its jobs not ended
        self._qos: Any = None
        self._hub: Any = None  # the consumer's event loop, woken when the count goes up
        self._lowered = 0  # by how much this has lowered the prefetch count
        self._stop_listening: Callable[[], None] | None = None

    def connect(self) -> None:
        signals.task_received.connect(self._on_received, weak=False)
        signals.task_postrun.connect(self._on_postrun, weak=False)
        signals.task_revoked.connect(self._on_revoked, weak=False)

    def attach(self, ctx: WorkerContext) -> None:
        """Hear of the end of each batch job the worker context runs."""
        self._stop_listening = ctx.batch.on_job_end(self._on_job_end)

    def disconnect(self) -> None:
        signals.task_received.disconnect(self._on_received)
        signals.task_postrun.disconnect(self._on_postrun)
        signals.task_revoked.disconnect(self._on_revoked)
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None

    @property
    def lowered(self) -> int:
        """How far the prefetch count is lowered now, for the batches' unfinished jobs."""
        with self._lock:
            return self._lowered

    def _on_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        # Runs in the consumer's own thread, before it fetches the next message.
        jobs = _jobs_of(request)
        qos = getattr(sender, "qos", None)
        if jobs <= 1 or qos is None:
            return
        with self._lock:
            self._qos, self._hub = qos, getattr(sender, "hub", None)
            self._remaining[str(request.id)] = jobs
            self._rebalance()
        # Now, not at the loop's next turn: the broker may be asked for the next
        # message before then.
        qos.update()

    def _on_job_end(self, batch_id: str) -> None:
        with self._lock:
            left = self._remaining.get(batch_id)
            if left is None:
                return
            self._remaining[batch_id] = max(1, left - 1)
            raised = self._rebalance()
        if raised:
            self._wake()

    def _forget(self, task_id: Any) -> None:
        with self._lock:
            if self._remaining.pop(str(task_id), None) is None:
                return
            raised = self._rebalance()
        if raised:
            self._wake()

    def _wake(self) -> None:
        """Have the consumer apply the higher count and fetch now: its loop may be
        waiting on the broker for up to a second, unaware of a change made here."""
        hub, qos = self._hub, self._qos
        if hub is not None and qos is not None:
            hub.call_soon(qos.update)

    def _on_postrun(self, task_id: Any = None, **_: Any) -> None:
        self._forget(task_id)

    def _on_revoked(self, request: Any = None, **_: Any) -> None:
        if request is not None:
            self._forget(request.id)

    def _rebalance(self) -> bool:
        """Lower the prefetch count by the held batches' extra jobs (never below 1).

        True when that raised the count past the messages held, so the consumer may
        fetch one more now: only then is its loop worth waking, not at every job's end.
        """
        qos = self._qos
        if qos is None:
            return False
        extra = sum(left - 1 for left in self._remaining.values())
        held = len(self._remaining)
        with qos._mutex:  # read and change together: the consumer changes it too
            unlowered = qos.value + self._lowered
            if unlowered <= 0:  # prefetch unlimited: nothing to weigh
                return False
            lowered = min(extra, unlowered - 1)
            before, self._lowered = self._lowered, lowered
            if lowered > before:
                qos.decrement_eventually(lowered - before)
            elif lowered < before:
                qos.increment_eventually(before - lowered)
            return unlowered - before <= held < unlowered - lowered


def _jobs_of(request: Any) -> int:
    """Jobs carried by a received message (1 unless it is a batch that says more)."""
    headers = getattr(request, "request_dict", None) or {}
    try:
        return max(1, int(headers.get(JOBS_HEADER) or 1))
    except (TypeError, ValueError):
        return 1
