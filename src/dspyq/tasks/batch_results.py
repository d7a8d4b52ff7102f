"""The states and results of a batch's jobs, written to Celery's Redis result backend.

Each job of a batch has its own task id, and its client's
:class:`~dspyq.api_client.job.Job` waits on that id as on any task's, so a job's state
and result are stored just as the Redis backend's ``store_result`` stores them: the
task's meta (``status``, ``result``, ``traceback``, ``children``, ``date_done``,
``task_id``) under ``backend.get_key_for_task(task_id)``, set with the backend's expiry
and published on the same key. Only public Celery API builds it (``encode_result``,
``current_task_children``, ``app.now``, ``encode``); what differs from ``store_result``
is that many jobs' writes share one Redis round trip, and a success is not read back
first (see :func:`store_results`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, states

from dspyq.resilience.redis_client import redis_errors

__all__ = ["JobResult", "mark_started", "result_meta", "store_committed_results", "store_results"]

logger = logging.getLogger(__name__)

REPLICA_WAIT_MS = 1000
"""How long a result write behind Sentinel waits for a replica to hold it."""
REPLICA_RETRY_S = 10.0
"""After a write no replica took in time, how long results skip that wait (a master
left without replicas would otherwise make every batch pay it)."""


class _ReplicaFence:
    """Behind Sentinel, results are acknowledged only once a replica holds them.

    Replication is asynchronous: a result the master took just before it died, and had
    not yet sent on, is gone after the failover while its job's message was already
    acknowledged, so the job would stay "running" for ever. ``WAIT`` on the writing
    connection, after the writes, returns once a replica has them; if the master dies
    first, the write fails as an outage and the job is delivered again.
    """

    def __init__(self) -> None:
        self._skip_until = 0.0

    def wanted(self, app: Celery) -> bool:
        options = app.conf.result_backend_transport_options or {}
        return "master_name" in options and time.monotonic() >= self._skip_until

    def settle(self, acknowledged: int) -> None:
        if acknowledged < 1:
            logger.warning(
                "no Redis replica took the job results within %d ms; results are kept on "
                "the master alone for the next %.0f s",
                REPLICA_WAIT_MS,
                REPLICA_RETRY_S,
            )
            self._skip_until = time.monotonic() + REPLICA_RETRY_S


_fence = _ReplicaFence()


def result_meta(backend: Any, task_id: str, state: str, result: Any) -> dict[str, Any]:
    """The meta ``backend.store_result(task_id, result, state)`` stores for a job."""
    ready = state in states.READY_STATES
    return {
        "status": state,
        "result": backend.encode_result(result, state),
        "traceback": None,
        "children": backend.current_task_children(),
        "date_done": backend.app.now().isoformat() if ready else None,
        "task_id": task_id,
    }


def _queue_state(pipe: Any, backend: Any, task_id: str, state: str, result: Any) -> None:
    """Queue on ``pipe`` the set and the announcement of one job's state."""
    key = backend.get_key_for_task(task_id)
    value = backend.encode(result_meta(backend, task_id, state, result))
    pipe.set(key, value, ex=backend.expires or None)
    pipe.publish(key, value)


_START_IF_NOT_DONE = """
for i, key in ipairs(KEYS) do
  local raw = redis.call('GET', key)
  if not raw or cjson.decode(raw)['status'] ~= 'SUCCESS' then
    if tonumber(ARGV[1]) > 0 then
      redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
    else
      redis.call('SET', key, ARGV[i + 1])
    end
    redis.call('PUBLISH', key, ARGV[i + 1])
  end
end
"""
"""Set each key to its STARTED meta unless the job is SUCCESS by now: checked in Redis,
atomically, because a second delivery of the batch can be running the same jobs."""


def mark_started(backend: Any, jobs: Sequence[tuple[str, Any]]) -> None:
    """Set every job's state to STARTED in one round trip, given each one's stored state
    (raw, as read from the backend; None when it has none).

    What ``backend.store_result(task_id, None, STARTED)`` does for each, including not
    overwriting a job already SUCCESS, as on a batch delivered twice: the check is made
    again in Redis at the write, since the other delivery may store the success between
    this one's read and its write (a STARTED written then would be the job's last state).
    """
    todo = [
        task_id
        for task_id, raw in jobs
        if raw is None or backend.decode_result(raw)["status"] != states.SUCCESS
    ]
    if not todo:
        return
    try:
        keys = [backend.get_key_for_task(task_id) for task_id in todo]
        values = [backend.encode(result_meta(backend, t, states.STARTED, None)) for t in todo]
        start = backend.client.register_script(_START_IF_NOT_DONE)
        start(keys=keys, args=[int(backend.expires or 0), *values])
    except Exception:
        # Only the "running" state is lost: each job's outcome is still stored.
        logger.warning("could not mark %d batch jobs started", len(todo), exc_info=True)


@dataclass
class JobResult:
    """A batch job's result, on its way to the result backend."""

    app: Celery
    task_id: str
    value: dict[str, Any] = field(default_factory=dict)
    stored: bool = False


def store_results(results: Sequence[JobResult]) -> list[None]:
    """Store the results of jobs that succeeded together, one round trip per app.

    Unlike ``mark_as_done`` this does not read each job's state first (Celery does, so
    as not to overwrite a SUCCESS): a job's result comes from its SQL record, which a
    second delivery returns unchanged, so writing it again changes nothing.
    """
    by_app: dict[int, list[JobResult]] = {}
    for result in results:
        by_app.setdefault(id(result.app), []).append(result)
    for entries in by_app.values():
        app = entries[0].app
        backend = app.backend  # this thread's own client, as Celery gives each
        fenced = _fence.wanted(app)
        with backend.client.pipeline(transaction=False) as pipe:
            for entry in entries:
                _queue_state(pipe, backend, entry.task_id, states.SUCCESS, entry.value)
            if fenced:
                pipe.wait(1, REPLICA_WAIT_MS)
            replies = pipe.execute()
        if fenced:
            _fence.settle(int(replies[-1]))
        for entry in entries:
            entry.stored = True
    return [None] * len(results)


def store_committed_results(results: list[JobResult]) -> None:
    """:func:`store_results` for successes just committed. Redis being unreachable is
    an outage, not the job's failure: the job is sent again, finds its success recorded
    and stores its result then."""
    with redis_errors("storing job results"):
        store_results(results)
