"""What one worker process keeps for running the jobs of batch messages.

Held by the process's :class:`~dspyq.tasks.context.WorkerContext`: how many batch jobs
may run at once (the worker's ``--concurrency``), the threads that run them, who hears
of each job's end (the prefetch of :mod:`dspyq.workers.prefetch`), and the group commit
that stores results of jobs recorded by an earlier delivery.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from dspyq.store.group_commit import GroupCommit
from dspyq.tasks.batch_results import JobResult, store_results

__all__ = ["DEFAULT_JOB_SLOTS", "BatchJobListener", "BatchJobs"]

logger = logging.getLogger(__name__)

DEFAULT_JOB_SLOTS = 8
"""Jobs of batches a process runs at once when no worker said otherwise."""

BatchJobListener = Callable[[str], None]
"""Called with a batch message's task id each time one of its jobs ends (any way)."""


class BatchJobs:
    """A process's slots, threads and listeners for batch jobs."""

    def __init__(self, slots: int = DEFAULT_JOB_SLOTS) -> None:
        self._check(slots)
        self.slots = slots
        self._threads: ThreadPoolExecutor | None = None
        self._threads_pid = 0
        self._lock = threading.Lock()
        self._listeners: list[BatchJobListener] = []
        self.results: GroupCommit[JobResult, None] = GroupCommit(
            store_results, lambda result: store_results([result])[0], name="results"
        )
        """Results of batch jobs that did not commit a success of their own (one recorded
        by an earlier delivery), stored together too."""

    @staticmethod
    def _check(slots: int) -> None:
        if slots < 1:
            raise ValueError(f"job slots must be at least 1, got {slots}")

    def set_slots(self, slots: int) -> None:
        """Run at most ``slots`` jobs of batches at once (the next batch resizes the pool)."""
        self._check(slots)
        with self._lock:
            self.slots = slots
            self._threads = None

    def threads(self) -> ThreadPoolExecutor:
        """The threads for batch jobs, kept between batches.

        Kept because Celery gives each thread its own result-backend client: new threads
        for every batch spent about a tenth of the worker's CPU building them again.
        Rebuilt after a fork (threads do not survive one).
        """
        with self._lock:
            if self._threads is None or self._threads_pid != os.getpid():
                self._threads = ThreadPoolExecutor(self.slots, thread_name_prefix="dspyq-batch")
                self._threads_pid = os.getpid()
            return self._threads

    def on_job_end(self, listener: BatchJobListener) -> Callable[[], None]:
        """Call ``listener`` whenever a job of a batch ends; returns what removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def job_ended(self, batch_id: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(batch_id)
            except Exception:
                logger.exception("batch job listener %r failed", listener)

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, None
        if threads is not None and self._threads_pid == os.getpid():
            threads.shutdown(wait=False)
