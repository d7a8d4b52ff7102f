"""The module-execution task: rebuild the program from JSON, run it, record it once.

Delivery is at least once (late acks, requeue on worker loss); recording is exactly
once: the execution row is keyed by the task id, a redelivered job that already
succeeded returns its stored outputs without calling any LM, and completion events have
ids derived from the task id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task, shared_task

from dspyq.core.context import context
from dspyq.core.custom_types import custom_types_from_json
from dspyq.core.module import Module
from dspyq.lm.lm import LM
from dspyq.lm.privacy import REDACT_MESSAGES_KEY, PrivacyGuard, strictest
from dspyq.settings import PrivacyLevel
from dspyq.store.attempts import AttemptStart
from dspyq.store.buffer import PendingRecords, pending_records
from dspyq.tasks.cancel import skip_if_cancelled
from dspyq.tasks.context import WorkerContext, worker_context
from dspyq.tasks.messages import ExecutionRequest, ExecutionResult, outputs_as_json
from dspyq.tasks.policies import INFRA_ERRORS, Failure, OutageResend, apply_policies
from dspyq.tasks.protocol import EXECUTE_TASK
from dspyq.tasks.recording import (
    execution_event,
    module_type_of,
    pending_start_of,
    stored_result,
    write_pending,
)
from dspyq.tasks.references import resolve_or_fail
from dspyq.tasks.streaming import publishing

__all__ = ["EXECUTE_TASK", "build_lm", "build_program", "execute_module", "run_execution"]

logger = logging.getLogger(__name__)


def build_program(env: WorkerContext, request: ExecutionRequest) -> Module:
    """A program of its own for this job, as ``request.program`` describes it."""
    return env.programs.build(request.program)


def build_lm(env: WorkerContext, model: str, lm_kwargs: dict[str, Any]) -> LM:
    """A fresh LM for one job (its history is the job's calls) over its thread's HTTP pool."""
    return LM(model, http_client=env.job_http.get(), **lm_kwargs)


def job_privacy_level(
    env: WorkerContext, request: ExecutionRequest, program: Module
) -> PrivacyLevel:
    """The strictest of the deployment's, the job's pool's, the submitter's and the
    program's own level (saved with its spec, so one run by reference keeps it too)."""
    settings = env.settings
    pool = settings.providers.get(request.provider)
    pool_level = pool.privacy_level if pool else None
    return strictest(settings.privacy.level, pool_level, request.privacy, program.privacy)


def _usage(lm: LM) -> dict[str, Any]:
    calls = [entry for entry in lm.history if not entry.get("cache_hit")]
    return {
        "input_tokens": sum(int(e["usage"].get("prompt_tokens", 0)) for e in calls),
        "output_tokens": sum(int(e["usage"].get("completion_tokens", 0)) for e in calls),
        "cost_usd": round(sum(float(e.get("cost", 0.0)) for e in calls), 8),
        "lm_calls": len(lm.history),
    }


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
    env = worker_context()
    resend = OutageResend(env)
    try:
        request = resolve_or_fail(task, env, request, record_id)
        result = _execute(task, env, request, record_id, extra_outputs, begun)
    except INFRA_ERRORS as exc:
        resend(task, record_id, exc)
    resend.over()
    return result


def _execute(
    task: Task,
    env: WorkerContext,
    request: ExecutionRequest,
    record_id: str,
    extra_outputs: dict[str, Any] | None,
    begun: AttemptStart | None,
) -> dict[str, Any]:
    if begun is None:
        # One transaction: the row (created if new) goes to running and the start event
        # is stored, or the row is found already succeeded and nothing else happens.
        begun = env.recorder.begin(pending_start_of(env, request, record_id))
    if begun.record is not None:
        logger.info("execution %s already succeeded; returning its recorded result", record_id)
        return stored_result(begun.record, request)
    started = time.perf_counter()
    lm = build_lm(env, request.lm, request.lm_kwargs)
    # The sink holds the job's lm_request events and rows here instead of writing two
    # transactions per LM call; every way out below writes them with its own records.
    with env.hooks.observed(request, record_id), pending_records() as pending:
        try:
            return _run(task, env, request, record_id, lm, pending, started, extra_outputs)
        finally:
            if pending:  # an exit that wrote nothing of its own (or whose write failed)
                try:
                    write_pending(env, pending)
                except Exception:
                    logger.exception("could not record the held-back records of %s", record_id)


def _run(
    task: Task,
    env: WorkerContext,
    request: ExecutionRequest,
    record_id: str,
    lm: LM,
    pending: PendingRecords,
    started: float,
    extra_outputs: dict[str, Any] | None,
) -> dict[str, Any]:
    """Run the program and record how it ended, with the records ``pending`` holds.

    A failure goes through the ordered policies of :mod:`dspyq.tasks.policies`.
    """
    try:
        program = build_program(env, request)
        guard = PrivacyGuard(job_privacy_level(env, request, program))
        with context(
            lm=lm,
            correlation_id=request.correlation_id,
            parent_id=record_id,
            task_id=record_id,
            max_parse_retries=request.max_parse_retries,
            # A stale cached answer is the last resort: not while fallback LMs remain.
            allow_stale=not request.fallbacks,
            # This worker's LM cache and gate, and the job thread's HTTP client.
            **env.lm_bindings(env.job_http.get()),
            **{REDACT_MESSAGES_KEY: guard.redacts_messages},
        ):
            # Custom values (Image ...) first, so redaction never rewrites their base64.
            inputs = guard.redact_inputs(custom_types_from_json(request.inputs))
            result = getattr(program, request.method)(**inputs)
            guard.check_outputs(outputs_as_json(result))
    except Exception as exc:
        apply_policies(Failure(task, env, request, record_id, pending, started, exc))
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
            execution_event(
                f"{record_id}:complete",
                "module_execution_complete",
                request,
                record_id,
                module_type=module_type_of(request),
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


@shared_task(name=EXECUTE_TASK, bind=True, max_retries=None)
def execute_module(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    """Run one module execution described by an :class:`ExecutionRequest` dict."""
    skip_if_cancelled(self)
    parsed = ExecutionRequest.model_validate(request)
    record_id = str(self.request.id)
    if parsed.step:
        record_id = f"{record_id}:{parsed.step}"
    if parsed.stream:
        with publishing(worker_context(), str(self.request.id)):
            return run_execution(self, parsed, record_id)
    return run_execution(self, parsed, record_id)
