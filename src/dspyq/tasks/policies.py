"""How a job's failure ends it: an ordered list of small policies, each testable alone.

When the program of a job raises, the :class:`Failure` goes through
:data:`JOB_POLICIES` in order (as dramatiq's middleware sees a message). A policy may

- end the delivery by sending the job again (:func:`requeue`, which raises),
- mark the failure as not the job's own (``handled``: nothing is recorded, the
  exception propagates as it is),
- replace the error by the one to record (``error``), or
- record the failure.

The first of them to end the delivery or mark the failure handled stops the rest. The
job's own errors are :class:`~dspyq.errors.DspyqError` (a foreign exception is wrapped
in one) and are recorded once; the job then fails with that error. The provider's
circuit breaker and rate limiter do their own accounting in the gate the LM passes
(:mod:`dspyq.resilience.gate`), not here.

Outside the job's records, :class:`OutageResend` sends a job that met an SQL or Redis
outage (anywhere on its path) again for later, with a wait growing with the outage.
Single jobs, batch jobs and multi-hop steps all take this path
(:func:`dspyq.tasks.execute.run_execution`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from celery import Task, signature
from celery.exceptions import SoftTimeLimitExceeded

from dspyq.errors import (
    CircuitOpenError,
    DspyqError,
    ProviderError,
    RateLimitExceededError,
    RedisUnavailableError,
    StoreUnavailableError,
)
from dspyq.lm.lm import split_model
from dspyq.masking import mask_exception
from dspyq.store.buffer import PendingRecords
from dspyq.tasks.app import lm_queue
from dspyq.tasks.context import WorkerContext
from dspyq.tasks.messages import ExecutionRequest
from dspyq.tasks.recording import execution_event, record_failure, write_pending

__all__ = [
    "INFRA_ERRORS",
    "JOB_POLICIES",
    "MAX_COUNTDOWN_SHARE",
    "Failure",
    "FailurePolicy",
    "OutageResend",
    "apply_policies",
    "fall_back",
    "leave_outages",
    "name_time_limit",
    "record",
    "requeue",
    "requeue_on_rate_limit",
    "wrap_foreign",
]

logger = logging.getLogger(__name__)

MAX_COUNTDOWN_SHARE = 0.5
"""A job re-queued to wait must come back well before Redis's visibility timeout (this
share of it), or Redis would also hand the waiting message to a second worker."""

RESEND_RETRY_POLICY = {
    "max_retries": 120,
    "interval_start": 0.5,
    "interval_step": 0.5,
    "interval_max": 2.0,
}
"""How long a job sent on (re-queued, moved to a fallback) waits for an unreachable
broker: up to about four minutes, retrying every two seconds. The job's own delivery
cannot be acknowledged meanwhile either, so giving up sooner would leave it to Redis's
visibility timeout (an hour by default)."""

INFRA_ERRORS = (StoreUnavailableError, RedisUnavailableError)
"""Not the job's failure: the SQL store or Redis could not be reached."""


@dataclass
class Failure:
    """A job whose program raised ``cause``, on its way through the policies."""

    task: Task
    env: WorkerContext
    request: ExecutionRequest
    record_id: str
    pending: PendingRecords
    started: float
    cause: BaseException
    error: BaseException = field(init=False)
    """What the job fails with: ``cause``, unless a policy replaced it."""
    handled: bool = False
    """Set by a policy that ended the failure's way through the policies."""

    def __post_init__(self) -> None:
        self.error = self.cause

    def countdown_limit(self) -> float:
        return self.env.settings.broker_visibility_timeout * MAX_COUNTDOWN_SHARE


FailurePolicy = Callable[[Failure], None]


def requeue(
    task: Task,
    *,
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    countdown: float = 0.0,
) -> NoReturn:
    """Send this job again under the same task id, and end this delivery without a state.

    ``replace`` (unlike ``retry``) records nothing for the ending delivery, so a quick
    worker that finishes the new delivery first is never overwritten by a RETRY state.
    The client's Job, which waits on the task id, follows the job unchanged.
    """
    delivery = task.request.delivery_info or {}
    again = signature(
        task.name,
        args=task.request.args,
        kwargs=kwargs if kwargs is not None else task.request.kwargs,
        queue=queue or delivery.get("routing_key"),
        countdown=countdown,
        retry=True,
        retry_policy=RESEND_RETRY_POLICY,
    )
    raise task.replace(again)


def requeue_on_rate_limit(failure: Failure) -> None:
    """Wait for rate-limit budget off the worker: re-queue with a countdown (the error's
    ``retry_after``) instead of sleeping. Jitter spreads the refused jobs, which would
    otherwise all wake at once."""
    exc = failure.error
    if not isinstance(exc, RateLimitExceededError):
        return
    wait = float(exc.retry_after or 1.0)
    write_pending(failure.env, failure.pending)
    countdown = min(wait + random.uniform(0, max(wait, 0.1)), failure.countdown_limit())
    requeue(failure.task, countdown=countdown)


def _falls_back(exc: BaseException) -> bool:
    """An open breaker, or a provider that stayed down after its retries (its
    ``retry_strategy`` says to try again later): try the next provider."""
    if isinstance(exc, CircuitOpenError):
        return True
    return isinstance(exc, ProviderError) and exc.retry_strategy in {"backoff", "after"}


def fall_back(failure: Failure) -> None:
    """Move the job to its next fallback LM (a message on that provider's queue)."""
    request, exc = failure.request, failure.error
    if not (request.fallbacks and _falls_back(exc)):
        return
    nxt, rest = request.fallbacks[0], request.fallbacks[1:]
    moved = request.model_copy(update={"lm": nxt, "fallbacks": rest})
    write_pending(
        failure.env,
        failure.pending,
        execution_event(
            f"{failure.record_id}:fallback:{nxt}",
            "lm_fallback",
            request,
            failure.record_id,
            from_lm=request.lm,
            to_lm=nxt,
            reason=type(exc).__name__,
            message=str(exc),
        ),
    )
    task = failure.task
    requeue(
        task,
        kwargs={**task.request.kwargs, "request": moved.model_dump()},
        queue=lm_queue(split_model(nxt)[0]),
    )


def leave_outages(failure: Failure) -> None:
    """An SQL or Redis outage is not the job's failure: nothing is recorded, and
    :class:`OutageResend` sends the job again for later."""
    if isinstance(failure.error, INFRA_ERRORS):
        failure.handled = True


def name_time_limit(failure: Failure) -> None:
    """A job past its soft time limit fails with a dspyq error that says so."""
    if isinstance(failure.error, SoftTimeLimitExceeded):
        failure.error = DspyqError(
            "the job ran past its time limit (DSPYQ_TASK_TIME_LIMIT)",
            correlation_id=failure.request.correlation_id,
            context={"task_id": failure.record_id},
        )


def wrap_foreign(failure: Failure) -> None:
    """A user's module raised something of its own: it fails the job as a dspyq error."""
    exc = failure.error
    if not isinstance(exc, DspyqError):
        failure.error = DspyqError(
            f"{type(exc).__name__}: {exc}",
            correlation_id=failure.request.correlation_id,
            context={"task_id": failure.record_id, "exception": type(exc).__name__},
        )


def record(failure: Failure) -> None:
    """Record the job's failure: the row, the error event and its held-back records."""
    exc = failure.error
    if isinstance(exc, DspyqError):
        env, request = failure.env, failure.request
        record_failure(env, request, failure.record_id, exc, failure.started, failure.pending)
        failure.handled = True


JOB_POLICIES: tuple[FailurePolicy, ...] = (
    requeue_on_rate_limit,
    fall_back,
    leave_outages,
    name_time_limit,
    wrap_foreign,
    record,
)
"""The policies a failed job goes through, in order."""


def apply_policies(failure: Failure, policies: Sequence[FailurePolicy] = JOB_POLICIES) -> NoReturn:
    """Run ``failure`` through ``policies`` (until one handles it), then raise its error."""
    for policy in policies:
        policy(failure)
        if failure.handled:
            break
    # The job's error and what it was raised from are stored with their tracebacks
    # (result backend, task events, logs): their messages are masked first.
    mask_exception(failure.error)
    mask_exception(failure.cause)
    if failure.error is failure.cause:
        raise failure.cause
    raise failure.error from failure.cause


class OutageResend:
    """Sends a job that met an SQL or Redis outage again, after a wait that grows with
    the outage (this process's :class:`~dspyq.tasks.outage.OutageClock`)."""

    def __init__(self, env: WorkerContext) -> None:
        self.env = env

    def __call__(self, task: Task, record_id: str, exc: DspyqError) -> NoReturn:
        limit = self.env.settings.broker_visibility_timeout * MAX_COUNTDOWN_SHARE
        wait = self.env.outage.retry_wait(limit)
        logger.warning("job %s runs again in %.1f s: %s", record_id, wait, exc.message)
        requeue(task, countdown=wait)

    def over(self) -> None:
        """The job got through: SQL and Redis answer again."""
        self.env.outage.over()
