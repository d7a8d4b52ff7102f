"""What a module execution writes: its events, its start, its failure, and the LM
records a job holds back while it runs (see :mod:`dspyq.store.buffer`).

Shared by the execution path (:mod:`dspyq.tasks.execute`) and the policies that end a
failed job (:mod:`dspyq.tasks.policies`), so every way out writes the same rows.
"""

from __future__ import annotations

import time
from typing import Any

from dspyq.errors import DspyqError
from dspyq.events import Event
from dspyq.masking import mask
from dspyq.store.attempts import PendingStart, pending_start
from dspyq.store.buffer import PendingRecords
from dspyq.tasks.context import WorkerContext
from dspyq.tasks.messages import ExecutionRequest, ExecutionResult

__all__ = [
    "execution_event",
    "module_type_of",
    "pending_start_of",
    "record_failure",
    "stored_result",
    "write_pending",
]


def module_type_of(request: ExecutionRequest) -> str:
    """The class name of the request's program (``"Predict"`` for ``...:Predict``)."""
    return str(request.program.get("kind", "")).rpartition(":")[2]


def execution_event(
    event_id: str, event_type: str, request: ExecutionRequest, task_id: str, **data: Any
) -> Event:
    return Event(
        event_id=event_id,
        event_type=event_type,
        correlation_id=request.correlation_id,
        parent_id=request.parent_id,
        data={"task_id": task_id, **data},
    )


def pending_start_of(env: WorkerContext, request: ExecutionRequest, record_id: str) -> PendingStart:
    """What recording the start of ``request``'s execution under ``record_id`` writes."""
    kind = str(request.program.get("kind", ""))
    module_type = module_type_of(request)

    def start_event(attempt: int) -> Event:
        return execution_event(
            f"{record_id}:start:{attempt}",
            "module_execution_start",
            request,
            record_id,
            module_type=module_type,
            method=request.method,
            lm=request.lm,
            input_data=request.inputs,
            attempt=attempt,
        )

    return pending_start(
        record_id,
        env.node,
        start_event,
        correlation_id=request.correlation_id,
        parent_id=request.parent_id,
        program=kind,
        module_type=module_type,
        lm=request.lm,
        inputs=mask(request.inputs),  # a record: an input named like a secret is masked
        program_name=request.program_name,
        program_version=request.program_version,
    )


def write_pending(env: WorkerContext, pending: PendingRecords, *also: Event) -> None:
    """Store the records ``pending`` holds, and ``also``, in one transaction."""
    held_events, held_rows = pending.events, pending.lm_requests
    env.recorder.record([*held_events, *also], held_rows)
    pending.discard(held_events, held_rows)


def stored_result(record: Any, request: ExecutionRequest) -> dict[str, Any]:
    """The result of an execution already recorded as succeeded."""
    return ExecutionResult(
        outputs=record.outputs or {},
        correlation_id=request.correlation_id,
        lm=record.lm or request.lm,
        input_tokens=record.input_tokens or 0,
        output_tokens=record.output_tokens or 0,
        cost_usd=record.cost_usd or 0.0,
        lm_calls=record.lm_calls or 0,
        duration_ms=record.duration_ms or 0.0,
    ).model_dump()


def record_failure(
    env: WorkerContext,
    request: ExecutionRequest,
    record_id: str,
    exc: DspyqError,
    started: float,
    pending: PendingRecords,
) -> None:
    """Mark the execution failed with ``exc``; its held-back records go with the error event."""
    exc.correlation_id = request.correlation_id
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    env.executions.mark_failed(
        record_id,
        exc.to_dict(),
        duration_ms=duration_ms,
        correlation_id=request.correlation_id,
        node=env.node,
    )
    write_pending(
        env,
        pending,
        execution_event(
            f"{record_id}:error",
            "module_execution_error",
            request,
            record_id,
            error=exc.to_dict(),
            duration_ms=duration_ms,
        ),
    )
