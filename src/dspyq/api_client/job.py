"""A handle on one submitted execution: status, result, cancel."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult

from dspyq.core.example import Prediction
from dspyq.errors import DspyqError, JobCancelledError, JobTimeoutError
from dspyq.tasks.cancel import cancel_job
from dspyq.tasks.protocol import ExecutionResult

if TYPE_CHECKING:
    from dspyq.api_client.client import Client

_STATUS = {
    "PENDING": "pending",
    "RECEIVED": "pending",
    "RETRY": "pending",
    "STARTED": "running",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
}


RECHECK_S = 5.0
"""Seconds a wait listens before reading the job's state again. Celery hears a result
only as a Redis publish; one made while the client re-subscribes after a lost link to
Redis is never delivered, and only a read of the stored state finds that result."""


class Job:
    """One execution on the queue; ``result()`` waits for its Prediction."""

    def __init__(self, client: Client, task_id: str, correlation_id: str) -> None:
        self._client = client
        self.id = task_id
        self.correlation_id = correlation_id
        self._async = AsyncResult(task_id, app=client.app)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, correlation_id={self.correlation_id!r})"

    @property
    def status(self) -> str:
        """``pending``, ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        return _STATUS.get(self._async.state, "pending")

    @property
    def stale(self) -> bool:
        """Whether the answer came from an expired cache entry because every provider was
        unavailable (``DSPYQ_DEGRADATION__STALE_CACHE``); False until the job succeeded."""
        if self._async.state != "SUCCESS":
            return False
        return ExecutionResult.model_validate(self._async.result).stale

    def result(self, timeout: float | None = None) -> Prediction:
        """Wait for the execution; a failed job raises the dspyq error it failed with."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = RECHECK_S if left is None else min(RECHECK_S, left)
            try:
                # Each wait starts by reading the stored state, then listens for changes.
                self._async.get(timeout=wait, propagate=False, disable_sync_subtasks=False)
                return self._outcome()
            except CeleryTimeoutError:
                if left is not None and left <= RECHECK_S:
                    break
        raise JobTimeoutError(
            f"job {self.id} did not finish within {timeout} s (status: {self.status})",
            correlation_id=self.correlation_id,
            context={"task_id": self.id, "timeout": timeout},
        )

    async def aresult(self, timeout: float | None = None, poll: float = 0.02) -> Prediction:
        """Async twin of :meth:`result`; polls without blocking the event loop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._async.ready():
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeoutError(
                    f"job {self.id} did not finish within {timeout} s (status: {self.status})",
                    correlation_id=self.correlation_id,
                    context={"task_id": self.id, "timeout": timeout},
                )
            await asyncio.sleep(poll)
            poll = min(poll * 1.5, 0.5)
        return self._outcome()

    def cancel(self) -> None:
        """Cancel the job: a queued job never runs; one already running finishes."""
        cancel_job(self._client.app, self.id)

    def _outcome(self) -> Prediction:
        state = self._async.state
        if state == "SUCCESS":
            return ExecutionResult.model_validate(self._async.result).prediction()
        if state == "REVOKED":
            raise JobCancelledError(
                f"job {self.id} was cancelled",
                correlation_id=self.correlation_id,
                context={"task_id": self.id},
            )
        raise self._error(self._async.result)

    def _error(self, raw: Any) -> DspyqError:
        """The job's error: the recorded one if the store has it, else what Celery gave."""
        recorded = self._client.recorded_error(self.id)
        if recorded is not None:
            error = DspyqError.from_dict(recorded)
        elif isinstance(raw, DspyqError):
            error = raw
        else:
            error = DspyqError(
                f"job {self.id} failed: {type(raw).__name__}: {raw}",
                context={"task_id": self.id, "exception": type(raw).__name__},
            )
        error.correlation_id = self.correlation_id
        return error
