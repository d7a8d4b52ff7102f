"""Jobs that name a saved program by reference: resolved when their execution starts.

A request with ``program_ref`` (``"qa@production"``) and no spec gets the spec of the
version the reference names at this moment, from the worker's alias-aware cache
(:meth:`~dspyq.tasks.context.WorkerContext.deployed_programs`), with ``program_name``
and ``program_version`` that the execution row records. Resolved once per execution:
the job runs on that version to its end whatever moves meanwhile, and what it hands on
(multi-hop steps, a fallback provider) carries the resolved spec, so it stays on it.
A canary's share is decided by the job's id, the same for every delivery of the job.
"""

from __future__ import annotations

from dspyq.tasks.context import WorkerContext
from dspyq.tasks.protocol import ExecutionRequest

__all__ = ["resolve_reference"]


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
