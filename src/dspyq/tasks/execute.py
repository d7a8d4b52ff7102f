"""The module-execution task: rebuild the program from JSON, run it, record it once.

Delivery is at least once (late acks, requeue on worker loss); recording is exactly
once: the execution row is keyed by the task id, a redelivered job that already
succeeded returns its stored outputs without calling any LM, and completion events have
ids derived from the task id.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any, NoReturn

from celery import Task, shared_task, signature
from celery.exceptions import SoftTimeLimitExceeded

from dspyq.core.context import context
from dspyq.core.module import Module
from dspyq.errors import (
    CircuitOpenError,
    DspyqError,
    ProviderError,
    RateLimitExceededError,
    RedisUnavailableError,
    StoreUnavailableError,
)
from dspyq.events import Event
from dspyq.lm.lm import LM, split_model
from dspyq.store.attempts import AttemptStart, PendingStart, pending_start
from dspyq.store.buffer import PendingRecords, pending_records
from dspyq.tasks.app import lm_queue
from dspyq.tasks.cancel import skip_if_cancelled
from dspyq.tasks.environment import TaskEnvironment, task_environment
from dspyq.tasks.hooks import observed_execution
from dspyq.tasks.messages import ExecutionRequest, ExecutionResult, outputs_as_json
from dspyq.tasks.protocol import EXECUTE_TASK
from dspyq.tasks.streaming import publishing

logger = logging.getLogger(__name__)


# A job re-queued to wait for rate-limit budget must come back well before Redis's
# visibility timeout, or Redis would also hand the waiting message to a second worker.
_MAX_COUNTDOWN_SHARE = 0.5


def build_program(env: TaskEnvironment, request: ExecutionRequest) -> Module:
    """A program of its own for this job, as ``request.program`` describes it."""
    return env.programs.build(request.program)


def build_lm(env: TaskEnvironment, model: str, lm_kwargs: dict[str, Any]) -> LM:
    """A fresh LM for one job (its history is the job's calls) over its thread's HTTP pool."""
    return LM(model, http_client=env.job_http.get(), **lm_kwargs)


def _usage(lm: LM) -> dict[str, Any]:
    calls = [entry for entry in lm.history if not entry.get("cache_hit")]
    return {
        "input_tokens": sum(int(e["usage"].get("prompt_tokens", 0)) for e in calls),
        "output_tokens": sum(int(e["usage"].get("completion_tokens", 0)) for e in calls),
        "cost_usd": round(sum(float(e.get("cost", 0.0)) for e in calls), 8),
        "lm_calls": len(lm.history),
    }


def _event(
    event_id: str, event_type: str, request: ExecutionRequest, task_id: str, **data: Any
) -> Event:
    return Event(
        event_id=event_id,
        event_type=event_type,
        correlation_id=request.correlation_id,
        parent_id=request.parent_id,
        data={"task_id": task_id, **data},
    )


# A job retried because SQL or Redis was unreachable waits longer the longer this process
# has met the outage (from 2 s up to this), so a long outage is not hammered by retries.
_INFRA_RETRY_MAX_SECONDS = 30.0
_outage_started: float | None = None


def _infra_retry_wait(limit: float) -> float:
    """Seconds before a job that met an SQL or Redis outage runs again (jittered)."""
    global _outage_started
    now = time.monotonic()
    if _outage_started is None:
        _outage_started = now
    ceiling = min(limit, max(2.0, min(_INFRA_RETRY_MAX_SECONDS, now - _outage_started)))
    return random.uniform(ceiling / 2, ceiling)


def run_execution(
    task: Task,
    request: ExecutionRequest,
    record_id: str,
    extra_outputs: dict[str, Any] | None = None,
    begun: AttemptStart | None = None,
) -> dict[str, Any]:
    """Run one execution under the row ``record_id``; returns an ExecutionResult dict.

    ``extra_outputs`` are recorded beside the method's own outputs (multi-hop adds the
    sub-questions and their answers to the final answer). ``begun``: the attempt's start,
    when the caller recorded it already (a batch records its jobs' starts together). A
    job that could not reach the SQL store or Redis is not failed: it is sent again to
    run once they are back (its records are written then; a success already stored is
    never run twice).
    """
    global _outage_started
    try:
        result = _execute(task, request, record_id, extra_outputs, begun)
    except (StoreUnavailableError, RedisUnavailableError) as exc:
        env = task_environment()
        wait = _infra_retry_wait(env.settings.broker_visibility_timeout * _MAX_COUNTDOWN_SHARE)
        logger.warning("job %s runs again in %.1f s: %s", record_id, wait, exc.message)
        requeue(task, countdown=wait)
    _outage_started = None  # SQL and Redis answer again
    return result


def pending_start_of(
    env: TaskEnvironment, request: ExecutionRequest, record_id: str
) -> PendingStart:
    """What recording the start of ``request``'s execution under ``record_id`` writes."""
    kind = str(request.program.get("kind", ""))
    module_type = kind.rpartition(":")[2]

    def start_event(attempt: int) -> Event:
        return _event(
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
        inputs=request.inputs,
    )


def _execute(
    task: Task,
    request: ExecutionRequest,
    record_id: str,
    extra_outputs: dict[str, Any] | None,
    begun: AttemptStart | None,
) -> dict[str, Any]:
    env = task_environment()
    if begun is None:
        # One transaction: the row (created if new) goes to running and the start event
        # is stored, or the row is found already succeeded and nothing else happens.
        begun = env.recorder.begin(pending_start_of(env, request, record_id))
    if begun.record is not None:
        logger.info("execution %s already succeeded; returning its recorded result", record_id)
        return _stored_result(begun.record, request)
    started = time.perf_counter()
    lm = build_lm(env, request.lm, request.lm_kwargs)
    # The sink holds the job's lm_request events and rows here instead of writing two
    # transactions per LM call; every way out below writes them with its own records.
    with observed_execution(request, record_id), pending_records() as pending:
        try:
            return _run(task, env, request, record_id, lm, pending, started, extra_outputs)
        finally:
            if pending:  # an exit that wrote nothing of its own (or whose write failed)
                try:
                    _write_pending(env, pending)
                except Exception:
                    logger.exception("could not record the held-back records of %s", record_id)


def _run(
    task: Task,
    env: TaskEnvironment,
    request: ExecutionRequest,
    record_id: str,
    lm: LM,
    pending: PendingRecords,
    started: float,
    extra_outputs: dict[str, Any] | None,
) -> dict[str, Any]:
    """Run the program and record how it ended, with the records ``pending`` holds."""
    module_type = str(request.program.get("kind", "")).rpartition(":")[2]
    try:
        program = build_program(env, request)
        with context(
            lm=lm,
            correlation_id=request.correlation_id,
            parent_id=record_id,
            task_id=record_id,
            max_parse_retries=request.max_parse_retries,
            # A stale cached answer is the last resort: not while fallback LMs remain.
            allow_stale=not request.fallbacks,
        ):
            result = getattr(program, request.method)(**request.inputs)
    except RateLimitExceededError as exc:
        # Wait for budget off the worker: re-queue with a countdown instead of sleeping.
        # Jitter spreads the refused jobs, which would otherwise all wake at once.
        wait = float(exc.retry_after or 1.0)
        limit = env.settings.broker_visibility_timeout * _MAX_COUNTDOWN_SHARE
        _write_pending(env, pending)
        requeue(task, countdown=min(wait + random.uniform(0, max(wait, 0.1)), limit))
    except (CircuitOpenError, ProviderError) as exc:
        if request.fallbacks and _falls_back(exc):
            _move_to_fallback(task, env, request, record_id, exc, pending)
        _fail(env, request, record_id, exc, started, pending)
        raise
    except (StoreUnavailableError, RedisUnavailableError):
        raise  # not the job's failure: run_execution sends it again for later
    except SoftTimeLimitExceeded as exc:
        error = DspyqError(
            "the job ran past its time limit (DSPYQ_TASK_TIME_LIMIT)",
            correlation_id=request.correlation_id,
            context={"task_id": record_id},
        )
        _fail(env, request, record_id, error, started, pending)
        raise error from exc
    except DspyqError as exc:
        _fail(env, request, record_id, exc, started, pending)
        raise
    except Exception as exc:
        # A user's module raised something of its own: record it, then let it fail the job.
        error = DspyqError(
            f"{type(exc).__name__}: {exc}",
            correlation_id=request.correlation_id,
            context={"task_id": record_id, "exception": type(exc).__name__},
        )
        _fail(env, request, record_id, error, started, pending)
        raise error from exc
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    outputs = {**outputs_as_json(result), **(extra_outputs or {})}
    usage = _usage(lm)
    stale = any(entry.get("stale") for entry in lm.history)
    held_events, held_rows = pending.events, pending.lm_requests
    result = ExecutionResult(
        outputs=outputs,
        correlation_id=request.correlation_id,
        lm=request.lm,
        duration_ms=duration_ms,
        stale=stale,
        **usage,
    ).model_dump()
    # A batch's job stores its result once its records are committed, with the others
    # committed together (see dspyq.tasks.batch); a task of its own returns it to Celery.
    after_success = getattr(task, "after_success", None)
    # One transaction: outputs and usage on the row, the LM calls' events and rows held
    # back while the job ran, and the completion event.
    env.recorder.succeed(
        record_id,
        outputs,
        [
            *held_events,
            _event(
                f"{record_id}:complete",
                "module_execution_complete",
                request,
                record_id,
                module_type=module_type,
                method=request.method,
                output_data=outputs,
                duration_ms=duration_ms,
                stale=stale,
                **usage,
            ),
        ],
        lm_requests=held_rows,
        duration_ms=duration_ms,
        correlation_id=request.correlation_id,
        node=env.node,
        after=after_success(result) if after_success is not None else None,
        **usage,
    )
    pending.discard(held_events, held_rows)
    return result


def _write_pending(env: TaskEnvironment, pending: PendingRecords, *also: Event) -> None:
    """Store the records ``pending`` holds, and ``also``, in one transaction."""
    held_events, held_rows = pending.events, pending.lm_requests
    env.recorder.record([*held_events, *also], held_rows)
    pending.discard(held_events, held_rows)


def _stored_result(record: Any, request: ExecutionRequest) -> dict[str, Any]:
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


def _falls_back(exc: DspyqError) -> bool:
    """An open breaker or a provider that stayed down after its retries: try the next."""
    return isinstance(exc, CircuitOpenError) or exc.retry_strategy in {"backoff", "after"}


def _move_to_fallback(
    task: Task,
    env: TaskEnvironment,
    request: ExecutionRequest,
    record_id: str,
    exc: Exception,
    pending: PendingRecords,
) -> None:
    nxt, rest = request.fallbacks[0], request.fallbacks[1:]
    moved = request.model_copy(update={"lm": nxt, "fallbacks": rest})
    _write_pending(
        env,
        pending,
        _event(
            f"{record_id}:fallback:{nxt}",
            "lm_fallback",
            request,
            record_id,
            from_lm=request.lm,
            to_lm=nxt,
            reason=type(exc).__name__,
            message=str(exc),
        ),
    )
    requeue(
        task,
        kwargs={**task.request.kwargs, "request": moved.model_dump()},
        queue=lm_queue(split_model(nxt)[0]),
    )


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
    )
    raise task.replace(again)


def _fail(
    env: TaskEnvironment,
    request: ExecutionRequest,
    record_id: str,
    exc: DspyqError,
    started: float,
    pending: PendingRecords,
) -> None:
    exc.correlation_id = request.correlation_id
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    env.executions.mark_failed(
        record_id,
        exc.to_dict(),
        duration_ms=duration_ms,
        correlation_id=request.correlation_id,
        node=env.node,
    )
    # The held-back LM records go with the error event, in one transaction.
    _write_pending(
        env,
        pending,
        _event(
            f"{record_id}:error",
            "module_execution_error",
            request,
            record_id,
            error=exc.to_dict(),
            duration_ms=duration_ms,
        ),
    )


@shared_task(name=EXECUTE_TASK, bind=True, max_retries=None)
def execute_module(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    """Run one module execution described by an :class:`ExecutionRequest` dict."""
    skip_if_cancelled(self)
    parsed = ExecutionRequest.model_validate(request)
    record_id = str(self.request.id)
    if parsed.step:
        record_id = f"{record_id}:{parsed.step}"
    if parsed.stream:
        with publishing(task_environment().settings, str(self.request.id)):
            return run_execution(self, parsed, record_id)
    return run_execution(self, parsed, record_id)
