"""Cancellation that holds even for jobs no live worker has seen yet.

Celery's revoke is a broadcast to the workers running now; a job cancelled while it
waits in the queue with no worker up would still run later. So the client also leaves a
mark in the result backend (kept as long as results are), and every task checks that
mark before it runs.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore
from celery.result import AsyncResult


def _mark(app: Celery, task_id: str) -> str:
    # Under the deployment's key prefix, as the results are (Celery prefixes only the
    # keys it names itself, not those set through backend.set).
    options = app.conf.result_backend_transport_options or {}
    return f"{options.get('global_keyprefix', '')}dspyq-cancelled-{task_id}"


def cancel_job(app: Celery, task_id: str) -> None:
    """Revoke now (live workers) and mark the job so any later delivery skips it."""
    app.backend.set(_mark(app, task_id), b"1")
    AsyncResult(task_id, app=app).revoke()


def is_cancelled(app: Celery, task_id: str) -> bool:
    """Whether the client cancelled job ``task_id``."""
    return app.backend.get(_mark(app, task_id)) is not None


def cancelled_and_states(app: Celery, task_ids: list[str]) -> tuple[set[str], list[Any]]:
    """Which of ``task_ids`` the client cancelled, and each one's raw stored state (None
    if none yet), read in one round trip."""
    if not task_ids:
        return set(), []
    backend = app.backend
    keys = [_mark(app, task_id) for task_id in task_ids]
    keys += [backend.get_key_for_task(task_id) for task_id in task_ids]
    values = backend.mget(keys)
    marks, states = values[: len(task_ids)], values[len(task_ids) :]
    cancelled = {task_id for task_id, mark in zip(task_ids, marks, strict=True) if mark is not None}
    return cancelled, list(states)


def skip_if_cancelled(task: Task) -> None:
    """End this delivery as REVOKED, running and recording nothing, if it was cancelled."""
    if is_cancelled(task.app, str(task.request.id)):
        task.backend.mark_as_revoked(task.request.id, reason="cancelled by the client")
        raise Ignore()
