"""Each failure policy of a job alone, on a real SQLite store and a stand-in Celery task."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery.canvas import Signature
from celery.exceptions import SoftTimeLimitExceeded

from dspyq.errors import (
    BadRequestError,
    CircuitOpenError,
    DspyqError,
    InputError,
    ProviderUnavailableError,
    RateLimitExceededError,
    StoreUnavailableError,
)
from dspyq.events import Event
from dspyq.settings import Settings
from dspyq.store.buffer import PendingRecords, pending_records
from dspyq.tasks import policies
from dspyq.tasks.context import WorkerContext, build_task_context
from dspyq.tasks.messages import ExecutionRequest
from dspyq.tasks.outage import OutageClock
from dspyq.tasks.policies import Failure, OutageResend, apply_policies
from dspyq.tasks.recording import pending_start_of

PROGRAM = {"kind": "dspyq.predict:Predict", "signature": "question -> answer"}


class Replaced(Exception):
    """What the stand-in task raises where Celery's ``replace`` ends a delivery."""

    def __init__(self, sig: Signature) -> None:
        super().__init__(sig.task)
        self.sig = sig


@dataclass
class _Request:
    id: str
    kwargs: dict[str, Any]
    args: tuple[Any, ...] = ()
    delivery_info: dict[str, Any] = field(default_factory=lambda: {"routing_key": "dspyq.lm.x"})


class StandInTask:
    """The parts of a Celery task the policies touch: its name, request and ``replace``."""

    name = "dspyq.execute_module"

    def __init__(self, request: ExecutionRequest, task_id: str) -> None:
        self.request = _Request(id=task_id, kwargs={"request": request.model_dump()})

    def replace(self, sig: Signature) -> Replaced:
        return Replaced(sig)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[WorkerContext]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}", broker_visibility_timeout=60
    )
    ctx = build_task_context(settings)
    yield ctx
    ctx.close()


def _request(**changes: Any) -> ExecutionRequest:
    fields: dict[str, Any] = {
        "program": PROGRAM,
        "inputs": {"question": "q"},
        "lm": "openai/gpt-4o-mini",
        "correlation_id": "corr-1",
    }
    fields.update(changes)
    return ExecutionRequest(**fields)


@pytest.fixture
def pending() -> Iterator[PendingRecords]:
    with pending_records() as held:
        yield held


def _failure(
    env: WorkerContext, pending: PendingRecords, exc: BaseException, **request: Any
) -> Failure:
    parsed = _request(**request)
    record_id = "job-1"
    env.recorder.begin(pending_start_of(env, parsed, record_id))
    task: Any = StandInTask(parsed, record_id)
    return Failure(task, env, parsed, record_id, pending, time.perf_counter(), exc)


def _held_event(pending: PendingRecords) -> None:
    pending.add_event(Event(event_type="lm_request", correlation_id="corr-1", data={"n": 1}))


# --- rate limit ---------------------------------------------------------------------------------


def test_a_rate_limited_job_is_requeued_with_a_jittered_countdown_and_its_records_kept(
    env: WorkerContext, pending: PendingRecords
) -> None:
    _held_event(pending)
    failure = _failure(env, pending, RateLimitExceededError("spent", retry_after=4.0))
    with pytest.raises(Replaced) as info:
        policies.requeue_on_rate_limit(failure)
    countdown = info.value.sig.options["countdown"]
    assert 4.0 <= countdown <= 8.0
    assert info.value.sig.options["queue"] == "dspyq.lm.x"  # the queue it came on
    assert not pending  # written before the job left
    assert env.events.count(correlation_id="corr-1", event_type="lm_request") == 1


def test_the_countdown_stays_under_half_the_visibility_timeout(
    env: WorkerContext, pending: PendingRecords
) -> None:
    failure = _failure(env, pending, RateLimitExceededError("spent", retry_after=600.0))
    with pytest.raises(Replaced) as info:
        policies.requeue_on_rate_limit(failure)
    assert info.value.sig.options["countdown"] == 30.0


def test_the_rate_limit_policy_leaves_other_errors_alone(
    env: WorkerContext, pending: PendingRecords
) -> None:
    failure = _failure(env, pending, ProviderUnavailableError("down"))
    policies.requeue_on_rate_limit(failure)
    assert not failure.handled and failure.error is failure.cause


# --- fallback -----------------------------------------------------------------------------------


def test_an_open_breaker_moves_the_job_to_its_next_fallback_queue(
    env: WorkerContext, pending: PendingRecords
) -> None:
    failure = _failure(
        env,
        pending,
        CircuitOpenError("open"),
        fallbacks=["anthropic/claude-3-haiku", "openai/gpt-4o"],
    )
    with pytest.raises(Replaced) as info:
        policies.fall_back(failure)
    sig = info.value.sig
    assert sig.options["queue"] == "dspyq.lm.anthropic"
    moved = sig.kwargs["request"]
    assert moved["lm"] == "anthropic/claude-3-haiku"
    assert moved["fallbacks"] == ["openai/gpt-4o"]
    (event,) = env.events.by_correlation("corr-1", event_type="lm_fallback")
    assert event.data["from_lm"] == "openai/gpt-4o-mini"
    assert event.data["reason"] == "CircuitOpenError"


def test_no_fallback_without_fallbacks_or_for_a_provider_error_not_worth_retrying(
    env: WorkerContext, pending: PendingRecords
) -> None:
    policies.fall_back(_failure(env, pending, CircuitOpenError("open")))
    permanent = BadRequestError("bad request")
    policies.fall_back(_failure(env, pending, permanent, fallbacks=["openai/gpt-4o"]))


# --- outages, time limits, foreign errors, recording ---------------------------------------------


def test_an_outage_is_left_for_the_resend_and_nothing_is_recorded(
    env: WorkerContext, pending: PendingRecords
) -> None:
    failure = _failure(env, pending, StoreUnavailableError("sql down"))
    with pytest.raises(StoreUnavailableError):
        apply_policies(failure)
    assert failure.handled
    record = env.executions.get("job-1")
    assert record is not None and record.status == "running"


def test_a_soft_time_limit_becomes_a_dspyq_error_that_says_so(
    env: WorkerContext, pending: PendingRecords
) -> None:
    failure = _failure(env, pending, SoftTimeLimitExceeded())
    policies.name_time_limit(failure)
    assert isinstance(failure.error, DspyqError)
    assert "time limit" in failure.error.message


def test_a_foreign_exception_is_wrapped_with_its_type(
    env: WorkerContext, pending: PendingRecords
) -> None:
    failure = _failure(env, pending, KeyError("x"))
    policies.wrap_foreign(failure)
    assert isinstance(failure.error, DspyqError)
    assert failure.error.context["exception"] == "KeyError"
    own = _failure(env, pending, InputError("unparsable"))
    policies.wrap_foreign(own)
    assert own.error is own.cause


def test_recording_marks_the_row_failed_with_the_error_event_and_held_records(
    env: WorkerContext, pending: PendingRecords
) -> None:
    _held_event(pending)
    failure = _failure(env, pending, InputError("unparsable"))
    policies.record(failure)
    assert failure.handled
    record = env.executions.get("job-1")
    assert record is not None and record.status == "failed"
    assert record.error is not None and record.error["type"] == "InputError"
    assert env.events.count(correlation_id="corr-1", event_type="module_execution_error") == 1
    assert env.events.count(correlation_id="corr-1", event_type="lm_request") == 1


def test_the_job_fails_with_the_replaced_error_chained_to_its_cause(
    env: WorkerContext, pending: PendingRecords
) -> None:
    cause = ValueError("mine")
    with pytest.raises(DspyqError) as info:
        apply_policies(_failure(env, pending, cause))
    assert info.value.__cause__ is cause
    record = env.executions.get("job-1")
    assert record is not None and record.status == "failed"


def test_policies_run_in_order_until_one_handles_the_failure(
    env: WorkerContext, pending: PendingRecords
) -> None:
    seen: list[str] = []

    def first(failure: Failure) -> None:
        seen.append("first")
        failure.handled = True

    def second(failure: Failure) -> None:
        seen.append("second")

    with pytest.raises(ValueError):
        apply_policies(_failure(env, pending, ValueError("x")), [first, second])
    assert seen == ["first"]


# --- the outage resend --------------------------------------------------------------------------


def test_the_outage_wait_grows_with_the_outage_and_resets_once_it_is_over() -> None:
    now = [100.0]
    clock = OutageClock(lambda: now[0])
    assert 1.0 <= clock.retry_wait(30.0) <= 2.0
    now[0] += 20.0
    assert 10.0 <= clock.retry_wait(30.0) <= 20.0
    now[0] += 100.0
    assert 15.0 <= clock.retry_wait(30.0) <= 30.0
    assert clock.retry_wait(4.0) <= 4.0  # never past the visibility-timeout share
    clock.over()
    assert 1.0 <= clock.retry_wait(30.0) <= 2.0


def test_the_resend_requeues_the_job_on_its_queue(env: WorkerContext) -> None:
    task: Any = StandInTask(_request(), "job-1")
    with pytest.raises(Replaced) as info:
        OutageResend(env)(task, "job-1", StoreUnavailableError("sql down"))
    assert 1.0 <= info.value.sig.options["countdown"] <= 2.0
    assert env.outage.started is not None
    OutageResend(env).over()
    assert env.outage.started is None
