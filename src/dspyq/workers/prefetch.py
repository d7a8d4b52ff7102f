"""A batch message counts as its jobs in a worker's prefetch, not as one message.

Celery lets a worker hold up to ``concurrency`` unacknowledged messages (prefetch
multiplier 1). A message of ``Client.map`` carries up to 20 jobs, so a worker of
concurrency 70 could take 70 batches, 1,400 jobs, while the pool's other workers wait
for work: the end of a large map then runs on one worker, 70 jobs at a time. Here a
worker lowers its prefetch by a batch's extra jobs when the batch arrives and raises it
again when the batch has run, so it holds about as many jobs as it can run at once and
leaves the rest in the queue for the others.

Only for execution pools that run tasks in the worker's own process (threads, gevent):
with prefork the batch runs in a child, which cannot reach the consumer's prefetch.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import signals

from dspyq.tasks.batch import JOBS_HEADER

__all__ = ["BatchPrefetch"]


class BatchPrefetch:
    """Weighs each received batch message by its jobs in the consumer's prefetch count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: dict[str, tuple[Any, int]] = {}

    def connect(self) -> None:
        signals.task_received.connect(self._on_received, weak=False)
        signals.task_postrun.connect(self._on_postrun, weak=False)
        signals.task_revoked.connect(self._on_revoked, weak=False)

    def disconnect(self) -> None:
        signals.task_received.disconnect(self._on_received)
        signals.task_postrun.disconnect(self._on_postrun)
        signals.task_revoked.disconnect(self._on_revoked)

    @property
    def held(self) -> int:
        """Prefetch slots currently given up for the extra jobs of batches."""
        with self._lock:
            return sum(taken for _, taken in self._taken.values())

    def _on_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        # Runs in the consumer's own thread, before it fetches the next message.
        jobs = _jobs_of(request)
        qos = getattr(sender, "qos", None)
        if jobs <= 1 or qos is None:
            return
        with qos._mutex:  # read and lower together: the consumer changes it too
            before = qos.value
            taken = before - qos.decrement_eventually(jobs - 1)
            # Now, not at the loop's next turn: the broker may be asked for the next
            # message before then.
            qos.update()
        if taken > 0:
            with self._lock:
                self._taken[str(request.id)] = (qos, taken)

    def _release(self, task_id: Any) -> None:
        with self._lock:
            entry = self._taken.pop(str(task_id), None)
        if entry is not None:
            qos, taken = entry
            qos.increment_eventually(taken)

    def _on_postrun(self, task_id: Any = None, **_: Any) -> None:
        self._release(task_id)

    def _on_revoked(self, request: Any = None, **_: Any) -> None:
        if request is not None:
            self._release(request.id)


def _jobs_of(request: Any) -> int:
    """Jobs carried by a received message (1 unless it is a batch that says more)."""
    headers = getattr(request, "request_dict", None) or {}
    try:
        return max(1, int(headers.get(JOBS_HEADER) or 1))
    except (TypeError, ValueError):
        return 1
