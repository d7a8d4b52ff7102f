"""``Client.evaluate``: a devset scored by the worker pools, as ``Evaluate`` does in-process.

Every check happens before anything is enqueued (the metric must have an import path,
each example's inputs must fit the program and be JSON). The examples then go out in
batch messages on the program's provider pool, as ``map`` sends its jobs (see
:mod:`dspyq.tasks.batch`), each with its own task id; outcomes are taken as they arrive
(:mod:`dspyq.api_client.evaluation_results`, which also hedges stragglers), with a rich
progress bar on stderr, and put back in devset order. The evaluation and each example's
row are recorded in SQL (``evaluations``, ``evaluation_rows``), the rows in one statement.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery.exceptions import TimeoutError as CeleryTimeoutError

from dspyq.api_client.evaluation_results import Outcomes
from dspyq.api_client.references import Referenced
from dspyq.api_client.submit import build_request, publish_batch, referenced
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module
from dspyq.core.program import program_to_spec
from dspyq.errors import DspyqError, InputError, JobTimeoutError, new_correlation_id
from dspyq.optimize.evaluate import DEFAULT_MAX_ERRORS, EvaluationResult, metric_progress
from dspyq.store.evaluations import EvaluationStore
from dspyq.tasks.cancel import cancel_job
from dspyq.tasks.metrics import Metric, metric_path, metric_score
from dspyq.tasks.protocol import (
    EVALUATE_BATCH_TASK,
    BatchItem,
    ExampleOutcome,
    ExampleScoring,
    ExecutionRequest,
    batch_size,
)

if TYPE_CHECKING:
    from dspyq.api_client.client import Client


def evaluate_on_pool(
    client: Client,
    program: Module | str,
    devset: Sequence[Example],
    *,
    metric: Metric | str,
    lm: str | None = None,
    fallbacks: Sequence[str] = (),
    lm_kwargs: dict[str, Any] | None = None,
    display_progress: bool = True,
    timeout: float | None = None,
    failure_score: float = 0.0,
    max_errors: int | None = None,
) -> EvaluationResult:
    """Score ``program`` on ``devset`` with ``metric`` on the worker pools (see module doc)."""
    path = metric_path(metric)
    examples = list(devset)
    evaluation_id = uuid.uuid4().hex
    correlation_id = new_correlation_id()
    target: Module | Referenced = (
        program if isinstance(program, Module) else _pinned(client, program)
    )
    requests = _requests(
        client, target, examples, lm, fallbacks, lm_kwargs, correlation_id, evaluation_id
    )
    lm_name = requests[0].lm if requests else (lm or "")
    module = target.program if isinstance(target, Referenced) else target
    store = EvaluationStore(client.engine)
    store.open(
        evaluation_id, correlation_id, program_to_spec(module).kind, path, lm_name, len(examples)
    )
    if not examples:
        store.finish(evaluation_id, score=0.0, errors=0)
        return _result(0.0, [], evaluation_id, correlation_id)

    items = [
        BatchItem(
            uuid.uuid4().hex,
            request.model_dump(mode="json"),
            ExampleScoring(
                evaluation_id=evaluation_id,
                index=index,
                metric=path,
                example=dict(example.items()),
                input_keys=sorted(example.inputs().keys()),
                failure_score=failure_score,
            ).model_dump(mode="json"),
        )
        for index, (example, request) in enumerate(zip(examples, requests, strict=True))
    ]
    outcomes = Outcomes(client.app, items, requests[0].provider)
    try:
        _send(client, items, requests[0])
    except BaseException:
        store.finish(evaluation_id, score=None, errors=0, status="failed")
        raise
    limit = DEFAULT_MAX_ERRORS if max_errors is None else max_errors
    errors = 0
    total = 0.0

    try:
        with metric_progress(display_progress, len(examples)) as advance:

            def take(outcome: ExampleOutcome) -> None:
                nonlocal errors, total
                if outcome.error is not None:
                    errors += 1
                    if errors >= limit:  # as Evaluate: stop when the count reaches it
                        raise DspyqError(
                            f"Evaluation stopped: {errors} examples failed, reaching "
                            f"max_errors={limit}; last error: {outcome.error.get('message')}",
                            correlation_id=correlation_id,
                            context={"evaluation_id": evaluation_id, "errors": errors},
                        )
                    total += failure_score
                else:
                    total += metric_score(outcome.score)
                advance(total)

            outcomes.collect(timeout, take)
    except CeleryTimeoutError:
        _abandon(client, outcomes, store, evaluation_id, errors, failure_score)
        raise JobTimeoutError(
            f"evaluation {evaluation_id} did not finish within {timeout} s",
            correlation_id=correlation_id,
            context={"evaluation_id": evaluation_id, "timeout": timeout},
        ) from None
    except BaseException:
        _abandon(client, outcomes, store, evaluation_id, errors, failure_score)
        raise

    rows: list[tuple[Example, Prediction, Any]] = []
    for example, outcome in zip(examples, outcomes.outcomes, strict=True):
        if outcome is None or outcome.error is not None or outcome.score is None:
            rows.append((example, Prediction(), failure_score))
        else:
            rows.append((example, Prediction(**(outcome.outputs or {})), outcome.score))
    score = round(100 * total / len(examples), 2)
    store.record_rows(evaluation_id, _rows(outcomes, failure_score))
    store.finish(evaluation_id, score=score, errors=errors)
    return _result(score, rows, evaluation_id, correlation_id)


def _pinned(client: Client, program: object) -> Referenced:
    """The version a reference names now, as ``name:version``: one version serves the
    whole devset, whatever moves while it runs."""
    if not isinstance(program, str):
        raise InputError(
            f"evaluate() takes a dspyq Module (Predict, ChainOfThought, ...) or a saved "
            f"program's reference ('qa@production', 'qa:3'), not {type(program).__name__}"
        )
    return referenced(client, referenced(client, program).pinned)


def _send(client: Client, items: list[BatchItem], first: ExecutionRequest) -> None:
    """The examples in batch messages, as ``map`` sends its jobs (each keeps its task id)."""
    size = batch_size(len(items), client.settings.map_batch_size)
    with client.app.producer_or_acquire() as producer:
        for start in range(0, len(items), size):
            publish_batch(client, EVALUATE_BATCH_TASK, items[start : start + size], first, producer)


def _rows(
    outcomes: Outcomes, failure_score: float
) -> list[tuple[int, str, float, dict[str, Any] | None]]:
    """The rows of the examples scored so far: (index, task id, score, error)."""
    return [
        (
            o.index,
            o.task_id,
            failure_score if o.score is None else float(o.score),
            o.error,
        )
        for o in outcomes.outcomes
        if o is not None
    ]


def _requests(
    client: Client,
    program: Module | Referenced,
    examples: list[Example],
    lm: str | None,
    fallbacks: Sequence[str],
    lm_kwargs: dict[str, Any] | None,
    correlation_id: str,
    evaluation_id: str,
) -> list[ExecutionRequest]:
    """One execution request per example, all checked before any is sent."""
    spec = None
    if isinstance(program, Module):
        spec = program_to_spec(program).model_dump(mode="json")
    requests = []
    for index, example in enumerate(examples):
        if not isinstance(example, Example):
            raise InputError(
                f"devset[{index}] is a {type(example).__name__}, not a dspyq Example",
                context={"index": index},
            )
        try:
            json.dumps(dict(example.items()))
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"devset[{index}] holds values that are not JSON ({exc}); a worker needs "
                "the whole example to run the metric",
                context={"index": index},
            ) from None
        inputs = dict(example.inputs().items())  # InputError if with_inputs() was never called
        request, _ = build_request(
            client, program, lm, fallbacks, lm_kwargs, correlation_id, inputs, spec=spec
        )
        requests.append(request.model_copy(update={"parent_id": evaluation_id}))
    return requests


def _abandon(
    client: Client,
    outcomes: Outcomes,
    store: EvaluationStore,
    evaluation_id: str,
    errors: int,
    failure_score: float,
) -> None:
    """Cancel the examples not yet done, keep the rows of those that are, and record
    the evaluation as failed."""
    for task_id in outcomes.pending():
        cancel_job(client.app, task_id)
    store.record_rows(evaluation_id, _rows(outcomes, failure_score))
    store.finish(evaluation_id, score=None, errors=errors, status="failed")


def _result(
    score: float,
    rows: list[tuple[Example, Prediction, Any]],
    evaluation_id: str,
    correlation_id: str,
) -> EvaluationResult:
    result = EvaluationResult(score=score, results=rows)
    result["evaluation_id"] = evaluation_id
    result["correlation_id"] = correlation_id
    return result
