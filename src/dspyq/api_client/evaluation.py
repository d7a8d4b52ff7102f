"""``Client.evaluate``: a devset scored by the worker pools, as ``Evaluate`` does in-process.

Every check happens before anything is enqueued (the metric must have an import path,
each example's inputs must fit the program and be JSON). The examples then go out as
one Celery group on the program's provider pool; results are taken as they arrive, with
a rich progress bar on stderr, and put back in devset order. The evaluation and each
example's row are recorded in SQL (``evaluations``, ``evaluation_rows``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery import group, signature
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import GroupResult

from dspyq.api_client.references import Referenced
from dspyq.api_client.submit import build_request, referenced
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module
from dspyq.core.program import program_to_spec
from dspyq.errors import DspyqError, InputError, JobTimeoutError, new_correlation_id
from dspyq.optimize.evaluate import DEFAULT_MAX_ERRORS, EvaluationResult, metric_progress
from dspyq.store.evaluations import EvaluationStore
from dspyq.tasks.cancel import cancel_job
from dspyq.tasks.metrics import Metric, metric_path, metric_score
from dspyq.tasks.protocol import (
    EVALUATE_TASK,
    ExampleOutcome,
    ExampleScoring,
    ExecutionRequest,
    lm_queue,
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

    fan_out = group(
        (
            signature(
                EVALUATE_TASK,
                kwargs={
                    "request": request.model_dump(mode="json"),
                    "scoring": ExampleScoring(
                        evaluation_id=evaluation_id,
                        index=index,
                        metric=path,
                        example=dict(example.items()),
                        input_keys=sorted(example.inputs().keys()),
                        failure_score=failure_score,
                    ).model_dump(mode="json"),
                },
                queue=lm_queue(request.provider),
                shadow=f"{EVALUATE_TASK}[{index}]",
                app=client.app,
            )
            for index, (example, request) in enumerate(zip(examples, requests, strict=True))
        ),
        app=client.app,
    )
    try:
        results: GroupResult = fan_out.apply_async()
    except BaseException:
        store.finish(evaluation_id, score=None, errors=0, status="failed")
        raise
    index_of = {child.id: index for index, child in enumerate(results.results)}
    outcomes: list[ExampleOutcome | None] = [None] * len(examples)
    limit = DEFAULT_MAX_ERRORS if max_errors is None else max_errors
    errors = 0
    total = 0.0

    try:
        with metric_progress(display_progress, len(examples)) as advance:

            def take(task_id: str, value: Any) -> None:
                nonlocal errors, total
                outcome = _outcome(task_id, index_of[task_id], value)
                outcomes[outcome.index] = outcome
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

            results.join_native(
                timeout=timeout, propagate=False, callback=take, disable_sync_subtasks=False
            )
    except CeleryTimeoutError:
        _abandon(client, results, store, evaluation_id, errors)
        raise JobTimeoutError(
            f"evaluation {evaluation_id} did not finish within {timeout} s",
            correlation_id=correlation_id,
            context={"evaluation_id": evaluation_id, "timeout": timeout},
        ) from None
    except BaseException:
        _abandon(client, results, store, evaluation_id, errors)
        raise

    rows: list[tuple[Example, Prediction, Any]] = []
    for example, outcome in zip(examples, outcomes, strict=True):
        if outcome is None or outcome.error is not None or outcome.score is None:
            rows.append((example, Prediction(), failure_score))
        else:
            rows.append((example, Prediction(**(outcome.outputs or {})), outcome.score))
    score = round(100 * total / len(examples), 2)
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


def _outcome(task_id: str, index: int, value: Any) -> ExampleOutcome:
    """A finished task's value; a task that failed outright becomes its example's error."""
    if isinstance(value, dict):
        return ExampleOutcome.model_validate(value)
    error = value if isinstance(value, DspyqError) else None
    if error is None:
        error = DspyqError(
            f"example {index} failed: {type(value).__name__}: {value}",
            context={"task_id": task_id, "exception": type(value).__name__},
        )
    return ExampleOutcome(index=index, task_id=task_id, error=error.to_dict())


def _abandon(
    client: Client, results: GroupResult, store: EvaluationStore, evaluation_id: str, errors: int
) -> None:
    """Cancel the examples not yet done and record the evaluation as failed."""
    for child in results.results:
        if not child.ready():
            cancel_job(client.app, child.id)
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
