"""Many executions in one message: what ``Client.map`` sends for a batch.

A Celery message costs a worker a few milliseconds of CPU however small the job (the
consumer, acks, the result backend): as much as dspyq's own work for a short LM call.
So ``map`` groups its jobs, and one ``dspyq.execute_batch`` message carries several,
each still with its own task id. The worker runs a batch's jobs at once, one thread
each, through exactly the path of a single job (:func:`~dspyq.tasks.execute.run_execution`:
same records, events and idempotence), and stores each job's state and result under its
own task id, so the client's :class:`~dspyq.api_client.job.Job` cannot tell the
difference. A process runs at most its worker's concurrency of batch jobs at once
(:func:`set_job_slots`): a batch is a way to carry jobs, not to run more of them.

A job that must leave the batch (it waits for rate-limit budget, or moves to a
fallback provider) is sent on as a single ``dspyq.execute_module`` message under its
own task id; the rest of the batch carries on. The batch message is acknowledged when
all its jobs are done; if its worker dies first, the whole message is redelivered and
the jobs that had already succeeded return their recorded result without an LM call.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn

from celery import Celery, Task, shared_task, states
from celery.canvas import Signature

from dspyq.errors import DspyqError
from dspyq.resilience.redis_client import redis_errors
from dspyq.store.attempts import AfterCommit, AttemptStart
from dspyq.store.group_commit import GroupCommit
from dspyq.tasks.app import lm_queue
from dspyq.tasks.cancel import cancelled_and_states
from dspyq.tasks.environment import task_environment
from dspyq.tasks.execute import EXECUTE_TASK, pending_start_of, run_execution
from dspyq.tasks.messages import ExecutionRequest
from dspyq.tasks.protocol import (
    BATCH_TASK,
    JOBS_HEADER,
    BatchItem,
    batch_message,
    batch_size,
)
from dspyq.tasks.protocol import batch_items as _items_of

__all__ = [
    "BATCH_TASK",
    "JOBS_HEADER",
    "BatchItem",
    "batch_message",
    "batch_size",
    "execute_batch",
    "on_batch_job_end",
    "set_job_slots",
]

logger = logging.getLogger(__name__)


class _SentOn(Exception):
    """The job left the batch as a message of its own (see :meth:`_JobTask.replace`)."""


@dataclass
class _JobRequest:
    """The parts of a Celery task request that the execution path reads."""

    id: str
    kwargs: dict[str, Any]
    delivery_info: dict[str, Any]
    args: tuple[Any, ...] = ()
    headers: dict[str, Any] = field(default_factory=dict)


class _JobTask:
    """One job of a batch, seen by :func:`run_execution` as if it were its own task.

    The execution path touches its task only to send the job on (a rate-limit wait or a
    fallback): here that publishes a single-job message under the job's own task id.
    """

    name = EXECUTE_TASK

    def __init__(self, batch: Task, item: BatchItem, delivery_info: dict[str, Any]) -> None:
        self.app = batch.app
        self.request = _JobRequest(
            id=item.task_id, kwargs={"request": item.request}, delivery_info=delivery_info
        )
        self.result = _Result(batch.app, item.task_id)

    def after_success(self, result: dict[str, Any]) -> AfterCommit:
        """Store ``result`` in the result backend with the success's records, once they
        are committed: the thread that commits a group stores its results together."""
        self.result.value = result
        return AfterCommit(_store_committed_results, self.result)

    def replace(self, sig: Signature) -> NoReturn:
        options = {k: v for k, v in sig.options.items() if k in {"queue", "countdown"}}
        self.app.send_task(
            EXECUTE_TASK, args=sig.args, kwargs=sig.kwargs, task_id=self.request.id, **options
        )
        raise _SentOn()


BatchJobListener = Callable[[str], None]
"""Called with a batch message's task id each time one of its jobs ends (any way)."""

_job_listeners: list[BatchJobListener] = []


def on_batch_job_end(listener: BatchJobListener) -> Callable[[], None]:
    """Call ``listener`` whenever a job of a batch ends; returns what removes it."""
    _job_listeners.append(listener)
    return lambda: _job_listeners.remove(listener)


def _job_ended(batch_id: str) -> None:
    for listener in list(_job_listeners):
        try:
            listener(batch_id)
        except Exception:
            logger.exception("batch job listener %r failed", listener)


def _run_item(
    batch: Task,
    item: BatchItem,
    request: ExecutionRequest,
    begun: AttemptStart | None,
    delivery_info: dict[str, Any],
    batch_id: str,
) -> None:
    """Run one job of the batch and store its state under its own task id.

    Runs in a thread of its own, where ``batch.request`` (thread-local in Celery) is
    empty: what it needs of the batch's delivery comes as ``delivery_info``.
    """
    try:
        _run_job(batch, item, request, begun, delivery_info)
    finally:
        _job_ended(batch_id)


def _run_job(
    batch: Task,
    item: BatchItem,
    request: ExecutionRequest,
    begun: AttemptStart | None,
    delivery_info: dict[str, Any],
) -> None:
    try:
        job = _JobTask(batch, item, {"routing_key": lm_queue(request.provider), **delivery_info})
        result = run_execution(job, request, item.task_id, begun=begun)
    except _SentOn:
        return  # its own message now carries it; its Job follows the same task id
    except Exception as exc:
        _job_failed(batch, item, exc)
        return
    if not job.result.stored:  # a success recorded earlier, returned without a new commit
        job.result.value = result
        _results(job.result)


def _job_failed(batch: Task, item: BatchItem, exc: Exception) -> None:
    if not isinstance(exc, DspyqError):
        # Not the job's own failure (those are DspyqErrors): keep the worker's view.
        logger.exception("job %s of a batch failed outside its execution", item.task_id)
    batch.backend.mark_as_failure(item.task_id, exc)


def _parsed(batch: Task, item: BatchItem) -> ExecutionRequest | None:
    """The job's request, or None (and the job failed) if it does not read as one."""
    try:
        request = ExecutionRequest.model_validate(item.request)
    except Exception as exc:
        _job_failed(batch, item, exc)
        return None
    # The batch's one spec object, not the copy validation made: the worker's program
    # cache then recognises it without serialising it again for each job.
    request.program = item.request["program"]
    return request


def _begin_all(jobs: list[tuple[BatchItem, ExecutionRequest]]) -> list[AttemptStart | None]:
    """Record the start of every job in one transaction, rather than one per job.

    If that fails (the store is down), each job records its own start when it runs,
    and meets the outage on its own path.
    """
    env = task_environment()
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
    items = _items_of(jobs, program)
    delivery = {k: v for k, v in (self.request.delivery_info or {}).items() if v is not None}
    # One round trip tells which jobs were cancelled and what each one's state is.
    cancelled, stored = cancelled_and_states(self.app, [item.task_id for item in items])
    batch_id = str(self.request.id)
    for item in items:
        if item.task_id in cancelled:
            self.backend.mark_as_revoked(item.task_id, reason="cancelled by the client")
            _job_ended(batch_id)
    todo = [pair for pair in zip(items, stored, strict=True) if pair[0].task_id not in cancelled]
    _mark_started(self.backend, todo)
    readable: list[tuple[BatchItem, ExecutionRequest]] = []
    for item, _ in todo:
        request = _parsed(self, item)
        if request is None:
            _job_ended(batch_id)
        else:
            readable.append((item, request))
    begun = _begin_all(readable)
    runs = [
        (self, item, request, start, delivery, batch_id)
        for (item, request), start in zip(readable, begun, strict=True)
    ]
    if len(runs) == 1:
        _run_item(*runs[0])
        return
    pool = _job_threads()
    for future in [pool.submit(_run_item, *run) for run in runs]:
        future.result()


def _mark_started(backend: Any, jobs: list[tuple[BatchItem, Any]]) -> None:
    """Set every job's state to STARTED in one round trip, given each one's stored state.

    What ``backend.store_result(task_id, None, STARTED)`` does for each (including not
    overwriting a job already SUCCESS, as on a redelivered batch).
    """
    if not jobs:
        return
    try:
        with backend.client.pipeline(transaction=False) as pipe:
            for item, raw in jobs:
                if raw is not None and backend.decode_result(raw)["status"] == states.SUCCESS:
                    continue
                _set_state(pipe, backend, item.task_id, states.STARTED, None)
            pipe.execute()
    except Exception:
        # Only the "running" state is lost: each job's outcome is still stored.
        logger.warning("could not mark %d batch jobs started", len(jobs), exc_info=True)


def _set_state(pipe: Any, backend: Any, task_id: str, state: str, result: Any) -> None:
    """Queue on ``pipe`` what the Redis result backend stores and announces for a state."""
    meta = backend._get_result_meta(backend.encode_result(result, state), state, None, None)
    meta["task_id"] = task_id
    key, value = backend.get_key_for_task(task_id), backend.encode(meta)
    pipe.set(key, value, ex=backend.expires or None)
    pipe.publish(key, value)


@dataclass
class _Result:
    """A batch job's result, on its way to the result backend."""

    app: Celery
    task_id: str
    value: dict[str, Any] = field(default_factory=dict)
    stored: bool = False


def _store_results(results: Sequence[_Result]) -> list[None]:
    """Store the results of jobs that succeeded together, one round trip per app.

    Unlike ``mark_as_done`` this does not read each job's state first (Celery does, so
    as not to overwrite a SUCCESS): a job's result comes from its SQL record, which a
    second delivery returns unchanged, so writing it again changes nothing.
    """
    by_app: dict[int, list[_Result]] = {}
    for result in results:
        by_app.setdefault(id(result.app), []).append(result)
    for entries in by_app.values():
        backend = entries[0].app.backend  # this thread's own client, as Celery gives each
        with backend.client.pipeline(transaction=False) as pipe:
            for entry in entries:
                _set_state(pipe, backend, entry.task_id, states.SUCCESS, entry.value)
            pipe.execute()
        for entry in entries:
            entry.stored = True
    return [None] * len(results)


def _store_committed_results(results: list[_Result]) -> None:
    """:func:`_store_results` for successes just committed. Redis being unreachable is
    an outage, not the job's failure: the job is sent again, finds its success recorded
    and stores its result then."""
    with redis_errors("storing job results"):
        _store_results(results)


_results: GroupCommit[_Result, None] = GroupCommit(
    _store_results, lambda result: _store_results([result])[0], name="results"
)
"""Results of batch jobs that did not commit a success of their own (one recorded by
an earlier delivery) are stored together too."""


DEFAULT_JOB_SLOTS = 8
"""Jobs of batches a process runs at once when no worker said otherwise."""

_slots = DEFAULT_JOB_SLOTS
_threads: ThreadPoolExecutor | None = None
_threads_pid = 0
_threads_lock = threading.Lock()


def set_job_slots(slots: int) -> None:
    """Run at most ``slots`` jobs of batches at once in this process (and its forks).

    A worker sets its ``--concurrency`` here, so it means jobs at once, LM calls in
    flight, whether the jobs came one per message or in batches.
    """
    global _slots, _threads
    if slots < 1:
        raise ValueError(f"job slots must be at least 1, got {slots}")
    with _threads_lock:
        _slots = slots
        _threads = None  # the next batch builds a pool of the new size


def _job_threads() -> ThreadPoolExecutor:
    """The process's threads for batch jobs, kept between batches.

    Kept because Celery gives each thread its own result-backend client: new threads
    for every batch spent about a tenth of the worker's CPU building them again.
    Rebuilt after a fork (threads do not survive one).
    """
    global _threads, _threads_pid
    with _threads_lock:
        if _threads is None or _threads_pid != os.getpid():
            _threads = ThreadPoolExecutor(_slots, thread_name_prefix="dspyq-batch")
            _threads_pid = os.getpid()
        return _threads
