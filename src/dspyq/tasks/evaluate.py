"""One example of a distributed evaluation: run the program, then the metric, on a worker.

The client fans a devset out as a Celery group of these tasks on the program's provider
pool. Each runs the program exactly as a module execution does (:func:`run_execution`:
one ``executions`` row keyed by the task id, with the evaluation's correlation id and
the evaluation id as parent), scores the prediction with the metric imported from its
path, and records the example's ``evaluation_rows`` row. A failing program or metric
does not fail the task: the example comes back with its error, which the client scores
as ``failure_score`` and counts, as ``Evaluate`` does in-process.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Ignore, Reject, Retry

from dspyq.core.example import Example
from dspyq.errors import DspyqError
from dspyq.store.attempts import AttemptStart
from dspyq.store.evaluations import EvaluationStore
from dspyq.tasks.batch import BatchJob, JobTask, SentOn, run_batch
from dspyq.tasks.cancel import skip_if_cancelled
from dspyq.tasks.context import WorkerContext, worker_context
from dspyq.tasks.execute import run_execution
from dspyq.tasks.messages import ExecutionRequest, ExecutionResult
from dspyq.tasks.metrics import metric_score, resolve_metric
from dspyq.tasks.protocol import (
    EVALUATE_BATCH_TASK,
    EVALUATE_TASK,
    ExampleOutcome,
    ExampleScoring,
)

logger = logging.getLogger(__name__)


def _metric_value(value: Any) -> bool | int | float:
    """The metric's value as it crosses the queue: itself when a bool or number, else its score."""
    if isinstance(value, bool | int | float):
        return value
    return metric_score(value)


def _score(
    task: Any,
    env: WorkerContext,
    parsed: ExecutionRequest,
    job: ExampleScoring,
    task_id: str,
    begun: AttemptStart | None = None,
) -> ExampleOutcome:
    """Run the program on the example's inputs and score it with the metric."""
    outcome = ExampleOutcome(index=job.index, task_id=task_id)
    try:
        metric = resolve_metric(job.metric, env.settings.allowed_imports)
        result = ExecutionResult.model_validate(run_execution(task, parsed, task_id, begun=begun))
        outcome.outputs = result.outputs
        example = Example(**job.example).with_inputs(*job.input_keys)
        outcome.score = _metric_value(metric(example, result.prediction()))
    except (Ignore, Retry, Reject, SentOn):
        raise  # re-queued (rate limit, fallback): the new delivery scores the example
    except DspyqError as exc:
        outcome.error = exc.to_dict()
    except Exception as exc:  # the user's metric raised: that example's error, as in Evaluate
        outcome.error = DspyqError(
            f"{type(exc).__name__}: {exc}",
            correlation_id=parsed.correlation_id,
            context={"task_id": task_id, "exception": type(exc).__name__},
        ).to_dict()
    if outcome.error is not None:
        logger.warning(
            "example %d of evaluation %s failed: %s",
            job.index,
            job.evaluation_id,
            outcome.error.get("message"),
        )
    return outcome


def row_score(job: ExampleScoring, outcome: ExampleOutcome) -> float:
    """What an example's row records: the metric's value, or the failure score."""
    return job.failure_score if outcome.score is None else float(outcome.score)


@shared_task(name=EVALUATE_TASK, bind=True, max_retries=None)
def evaluate_example(
    self: Task, request: dict[str, Any], scoring: dict[str, Any]
) -> dict[str, Any]:
    """Run the program on one example's inputs and score it; returns an ExampleOutcome dict.

    ``request`` keeps the name ``execute_module`` gives it, so rate-limit waits and
    provider fallbacks re-queue this task the same way. An example sent on its own (out
    of a batch) records its row itself; a hedged copy leaves that to the client.
    """
    skip_if_cancelled(self)
    parsed = ExecutionRequest.model_validate(request)
    job = ExampleScoring.model_validate(scoring)
    task_id = str(self.request.id)
    env = worker_context()
    outcome = _score(self, env, parsed, job, task_id)
    if job.hedge:  # the client records the copy that ends first
        return outcome.model_dump(mode="json")
    EvaluationStore(env.engine).record_row(
        job.evaluation_id, job.index, task_id, row_score(job, outcome), outcome.error
    )
    return outcome.model_dump(mode="json")


def _score_job(job: BatchJob, task: JobTask) -> dict[str, Any]:
    """One example of an evaluation batch: its outcome is stored under its own task id
    as soon as it is scored (the client's progress bar follows each one); the client
    writes the evaluation's rows together at the end."""
    scoring = ExampleScoring.model_validate(job.item.scoring)
    outcome = _score(task, job.env, job.request, scoring, job.item.task_id, job.begun)
    return outcome.model_dump(mode="json")


@shared_task(name=EVALUATE_BATCH_TASK, bind=True, ignore_result=True)
def evaluate_batch(
    self: Task, jobs: list[dict[str, Any]], program: dict[str, Any] | None = None
) -> None:
    """Score every example of the batch at once (see :func:`dspyq.tasks.batch.run_batch`)."""
    run_batch(self, jobs, program, _score_job)
