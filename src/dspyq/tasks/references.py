"""Jobs that name a saved program by reference: resolved when their execution starts.

A request with ``program_ref`` (``"qa@production"``) and no spec gets the spec of the
version the reference names at this moment, from the worker's alias-aware cache
(:meth:`~dspyq.tasks.context.WorkerContext.deployed_programs`), with ``program_name``
and ``program_version`` that the execution row records. Resolved once per execution:
the job runs on that version to its end whatever moves meanwhile, and what it hands on
(multi-hop steps, a fallback provider) carries the resolved spec, so it stays on it.
A canary's share is decided by the job's id, the same for every delivery of the job.

A reference that resolves to nothing (a version deleted since the job was sent, an
alias removed) fails the job like any other error of its own: an execution row, failed,
naming the program and the version it asked for, and one ``module_execution_error``.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task

from dspyq.errors import DspyqError
from dspyq.program_ref import parse_program_ref
from dspyq.store.buffer import PendingRecords
from dspyq.tasks.context import WorkerContext
from dspyq.tasks.protocol import ExecutionRequest
from dspyq.tasks.recording import pending_start_of

__all__ = ["resolve_or_fail", "resolve_reference"]


def resolve_reference(
    env: WorkerContext, request: ExecutionRequest, job_id: str
) -> ExecutionRequest:
    """``request`` with its program resolved (itself when it carries its spec already).

    InputError when the reference names nothing saved (any more); the store's errors
    when SQL cannot be read (the job is then sent again, as for any outage)."""
    if request.resolved or request.program_ref is None:
        return request
    found = env.deployed_programs().resolve(request.program_ref, job_id)
    return request.model_copy(
        update={
            "program": found.spec,
            "program_name": found.name,
            "program_version": found.version,
        }
    )


def resolve_or_fail(
    task: Task, env: WorkerContext, request: ExecutionRequest, record_id: str
) -> ExecutionRequest:
    """:func:`resolve_reference`, recording the job as failed when the reference names
    nothing saved; SQL and Redis outages propagate (the job is sent again)."""
    from dspyq.tasks.policies import INFRA_ERRORS, Failure, apply_policies

    started = time.perf_counter()
    try:
        return resolve_reference(env, request, record_id)
    except INFRA_ERRORS:
        raise
    except DspyqError as exc:
        named = _as_named(request, exc.context)
        begun = env.recorder.begin(pending_start_of(env, named, record_id))
        if begun.record is not None:  # it succeeded before the version went: that stands
            return named
        apply_policies(Failure(task, env, named, record_id, PendingRecords(), started, exc))


def _as_named(request: ExecutionRequest, context: dict[str, Any]) -> ExecutionRequest:
    """``request`` with the program name and version it asked for, as far as known."""
    ref = parse_program_ref(request.program_ref)
    version = ref.version if ref.version is not None else context.get("version")
    known = version if isinstance(version, int) and not isinstance(version, bool) else None
    return request.model_copy(update={"program_name": ref.name, "program_version": known})
