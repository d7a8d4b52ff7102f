"""Many executions in one message: what ``Client.map`` sends for a batch.

A Celery message costs a worker a few milliseconds of CPU however small the job (the
consumer, acks, the result backend): as much as dspyq's own work for a short LM call.
So ``map`` groups its jobs, and one ``dspyq.execute_batch`` message carries several,
each still with its own task id. The worker runs a batch's jobs at once, one thread
each, through exactly the path of a single job (:func:`~dspyq.tasks.execute.run_execution`:
same records, events and idempotence), and stores each job's state and result under its
own task id, so the client's :class:`~dspyq.api_client.job.Job` cannot tell the
difference. A process runs at most its worker's concurrency of batch jobs at once
(its context's :class:`~dspyq.tasks.batch_jobs.BatchJobs` slots): a batch is a way to
carry jobs, not to run more of them.

A job that must leave the batch (it waits for rate-limit budget, or moves to a
fallback provider) is sent on as a single ``dspyq.execute_module`` message under its
own task id; the rest of the batch carries on. The batch message is acknowledged when
all its jobs are done; if its worker dies first, the whole message is redelivered and
the jobs that had already succeeded return their recorded result without an LM call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import redis
from celery import Task, shared_task
from celery.canvas import Signature
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from dspyq.errors import BrokerUnavailableError, DspyqError, RedisUnavailableError
from dspyq.store.attempts import AfterCommit, AttemptStart
from dspyq.tasks.app import lm_queue
from dspyq.tasks.batch_results import JobResult, mark_started, store_committed_results
from dspyq.tasks.cancel import cancelled_and_states
from dspyq.tasks.context import WorkerContext, worker_context
from dspyq.tasks.execute import EXECUTE_TASK, run_execution
from dspyq.tasks.messages import ExecutionRequest
from dspyq.tasks.protocol import (
    BATCH_TASK,
    EVALUATE_TASK,
    JOBS_HEADER,
    BatchItem,
    batch_items,
    batch_message,
    batch_size,
)
from dspyq.tasks.recording import pending_start_of
from dspyq.tasks.references import resolve_reference

# The message's parts are re-exported for the modules that import them from here.
__all__ = [
    "BATCH_TASK",
    "JOBS_HEADER",
    "BatchItem",
    "JobTask",
    "SentOn",
    "batch_message",
    "batch_size",
    "execute_batch",
    "run_batch",
]

logger = logging.getLogger(__name__)


class SentOn(Exception):
    """The job left the batch as a message of its own (see :meth:`JobTask.replace`)."""


@dataclass
class _JobRequest:
    """The parts of a Celery task request that the execution path reads."""

    id: str
    kwargs: dict[str, Any]
    delivery_info: dict[str, Any]
    args: tuple[Any, ...] = ()
    headers: dict[str, Any] = field(default_factory=dict)


class JobTask:
    """One job of a batch, seen by :func:`run_execution` as if it were its own task.

    The execution path touches its task only to send the job on (a rate-limit wait or a
    fallback): here that publishes a single-job message under the job's own task id
    (``dspyq.evaluate_example`` for an example of an evaluation, which keeps its scoring).
    """

    def __init__(self, batch: Task, item: BatchItem, delivery_info: dict[str, Any]) -> None:
        self.app = batch.app
        self.name = EXECUTE_TASK if item.scoring is None else EVALUATE_TASK
        kwargs = {"request": item.request}
        if item.scoring is not None:
            kwargs["scoring"] = item.scoring
        self.request = _JobRequest(id=item.task_id, kwargs=kwargs, delivery_info=delivery_info)
        self.result = JobResult(batch.app, item.task_id)
        self.scored = item.scoring is not None

    def after_success(self, result: dict[str, Any]) -> AfterCommit | None:
        """Store ``result`` in the result backend with the success's records, once they
        are committed: the thread that commits a group stores its results together.
        An example's result is its scored outcome, stored once the metric has run."""
        if self.scored:
            return None
        self.result.value = result
        return AfterCommit(store_committed_results, self.result)

    def replace(self, sig: Signature) -> NoReturn:
        keep = {"queue", "countdown", "retry", "retry_policy"}
        options = {k: v for k, v in sig.options.items() if k in keep}
        send = {"args": sig.args, "kwargs": sig.kwargs, "task_id": self.request.id, **options}
        try:
            self.app.send_task(sig.task, **send)
        except Exception:
            # The pooled connection broke with the broker (a partition): its channel can
            # fail in ways kombu does not retry. A connection of its own, retried until
            # the broker answers again, sends the job on; the job is never dropped.
            logger.warning("could not send job %s on; retrying", self.request.id, exc_info=True)
            with self.app.connection_for_write() as conn:
                self.app.send_task(sig.task, connection=conn, **send)
        raise SentOn()


@dataclass(frozen=True)
class BatchJob:
    """One job of a batch message, with what its runner needs of the batch.

    Run in a thread of its own, where ``batch.request`` (thread-local in Celery) is
    empty: what the job needs of the batch's delivery comes as ``delivery_info``.
    """

    env: WorkerContext
    batch: Task
    item: BatchItem
    request: ExecutionRequest
    begun: AttemptStart | None
    delivery_info: dict[str, Any]


JobRunner = Callable[[BatchJob, "JobTask"], Any]
"""Runs one job of a batch as its ``JobTask``; returns the outcome to store under the
job's own task id, or None when there is none new to store."""


def _run_item(job: BatchJob, batch_id: str, run_job: JobRunner) -> None:
    """Run one job of the batch and store its state under its own task id."""
    try:
        _run_one(job, run_job)
    finally:
        job.env.batch.job_ended(batch_id)


def job_delivery(request: ExecutionRequest, delivery_info: dict[str, Any]) -> dict[str, Any]:
    """The delivery a batch job's execution sees: its own provider queue's."""
    return {"routing_key": lm_queue(request.provider), **delivery_info}


def _run_one(job: BatchJob, run_job: JobRunner) -> None:
    try:
        task = JobTask(job.batch, job.item, job_delivery(job.request, job.delivery_info))
        value = run_job(job, task)
    except SentOn:
        return  # its own message now carries it; its Job follows the same task id
    except Exception as exc:
        job_failed(job.batch, job.item, exc)
        return
    if value is not None:
        task.result.value = value
        job.env.batch.results(task.result)


def _run_job(job: BatchJob, task: JobTask) -> dict[str, Any] | None:
    """One execution of a batch; None when its success was recorded earlier and came
    back without a new commit (its result is then already stored)."""
    result = run_execution(task, job.request, job.item.task_id, begun=job.begun)
    return None if task.result.stored else result


def job_failed(batch: Task, item: BatchItem, exc: Exception) -> None:
    if not isinstance(exc, DspyqError):
        # Not the job's own failure (those are DspyqErrors): keep the worker's view.
        logger.exception("job %s of a batch failed outside its execution", item.task_id)
    batch.backend.mark_as_failure(item.task_id, exc)


def _parsed(env: WorkerContext, batch: Task, item: BatchItem) -> ExecutionRequest | None:
    """The job's request, or None (and the job failed) if it does not read as one."""
    try:
        request = ExecutionRequest.model_validate(item.request)
    except Exception as exc:
        job_failed(batch, item, exc)
        return None
    if request.program_ref is not None and not request.resolved:
        try:
            return resolve_reference(env, request, item.task_id)
        except Exception:  # resolved again on the job's own path, which handles outages
            logger.warning("could not resolve %s ahead", request.program_ref, exc_info=True)
            return request
    # The batch's one spec object, not the copy validation made: the worker's program
    # cache then recognises it without serialising it again for each job.
    request.program = item.request["program"]
    return request


def _begin_all(
    env: WorkerContext, jobs: list[tuple[BatchItem, ExecutionRequest]]
) -> list[AttemptStart | None]:
    """Record the start of every job in one transaction, rather than one per job.

    If that fails (the store is down), each job records its own start when it runs,
    and meets the outage on its own path.
    """
    if any(not request.resolved for _, request in jobs):
        return [None] * len(jobs)  # each job resolves its reference and starts on its own
    starts = [pending_start_of(env, request, item.task_id) for item, request in jobs]
    try:
        return list(env.recorder.begin_many(starts))
    except Exception:
        logger.warning(
            "could not record the start of %d batch jobs at once", len(jobs), exc_info=True
        )
        return [None] * len(jobs)


@shared_task(name=BATCH_TASK, bind=True, ignore_result=True)
def execute_batch(
    self: Task, jobs: list[dict[str, Any]], program: dict[str, Any] | None = None
) -> None:
    """Run every job of the batch at once; each job's outcome is stored under its own id.

    ``program``: the spec shared by jobs whose request carries none (see
    :func:`batch_message`).
    """
    run_batch(self, jobs, program, _run_job)


OUTAGES = (
    redis.ConnectionError,
    redis.TimeoutError,
    OperationalError,
    RedisUnavailableError,
    BrokerUnavailableError,
)
"""Errors that say Redis or the broker is out of reach, not that the batch is bad."""


def run_batch(
    self: Task, jobs: list[dict[str, Any]], program: dict[str, Any] | None, run_job: JobRunner
) -> None:
    """Run every job of a batch message at once, each through ``run_job``."""
    try:
        _run_all(self, jobs, program, run_job)
    except OUTAGES as exc:
        # Failing would acknowledge the message (late acks ack failures), and once Redis
        # answers again that ack goes through: the batch's jobs would be lost unrun.
        # Requeued instead; jobs that already succeeded return their recorded result.
        logger.warning("batch %s met an outage; requeued", self.request.id, exc_info=True)
        raise Reject(exc, requeue=True) from exc


def _run_all(
    self: Task, jobs: list[dict[str, Any]], program: dict[str, Any] | None, run_job: JobRunner
) -> None:
    env = worker_context()
    items = batch_items(jobs, program)
    delivery = {k: v for k, v in (self.request.delivery_info or {}).items() if v is not None}
    # One round trip tells which jobs were cancelled and what each one's state is.
    # Redis out of reach here raises to run_batch, which requeues the whole message.
    cancelled, stored = cancelled_and_states(self.app, [item.task_id for item in items])
    batch_id = str(self.request.id)
    for item in items:
        if item.task_id in cancelled:
            self.backend.mark_as_revoked(item.task_id, reason="cancelled by the client")
            env.batch.job_ended(batch_id)
    todo = [pair for pair in zip(items, stored, strict=True) if pair[0].task_id not in cancelled]
    mark_started(self.backend, [(item.task_id, raw) for item, raw in todo])
    readable: list[tuple[BatchItem, ExecutionRequest]] = []
    for item, _ in todo:
        request = _parsed(env, self, item)
        if request is None:
            env.batch.job_ended(batch_id)
        else:
            readable.append((item, request))
    begun = _begin_all(env, readable)
    runs = [
        BatchJob(env, self, item, request, start, delivery)
        for (item, request), start in zip(readable, begun, strict=True)
    ]
    if len(runs) == 1:
        _run_item(runs[0], batch_id, run_job)
        return
    pool = env.batch.threads()
    for future in [pool.submit(_run_item, run, batch_id, run_job) for run in runs]:
        future.result()
