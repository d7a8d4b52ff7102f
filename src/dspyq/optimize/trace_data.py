"""Run a program over a dataset and keep each run's trace, as DSPy's ``bootstrap_trace_data``.

Each example runs under a fresh trace through :class:`Evaluate` (its threads, its
progress line); a row is the example, its prediction, the trace of predictor calls
and, with a metric, the score. A completion the adapter cannot parse becomes a
:class:`FailedPrediction` scored ``format_failure_score`` (its trace ends with the
failed call), as DSPy 3.4.1 does; other errors count as the example's error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.errors import AdapterParseError, ConfigurationError, ProviderError
from dspyq.optimize.evaluate import Evaluate

__all__ = ["FailedPrediction", "bootstrap_trace_data"]

logger = logging.getLogger(__name__)


@dataclass
class FailedPrediction:
    completion_text: str
    format_reward: float | None = None


def bootstrap_trace_data(
    program: Module,
    dataset: Sequence[Example],
    metric: Callable[..., Any] | None = None,
    num_threads: int | None = None,
    raise_on_error: bool = True,
    failure_score: float = 0,
    format_failure_score: float = -1,
    log_format_failures: bool = False,
    capture_crashes: bool = False,
) -> list[dict[str, Any]]:
    """``{"example", "prediction", "trace", "example_ind"}`` (and ``"score"`` with a
    metric) per example, in dataset order; see the module docstring."""
    if not dataset:
        raise ConfigurationError("devset must contain at least one example, got an empty devset.")
    evaluator = Evaluate(
        devset=list(dataset),
        num_threads=num_threads,
        display_progress=True,
        provide_traceback=False,
        max_errors=len(dataset) * 10,
        failure_score=failure_score,
    )

    def wrapped_metric(example: Example, outcome: Any, trace: Any = None) -> Any:
        prediction, _ = outcome
        if isinstance(prediction, FailedPrediction):
            return prediction.format_reward or format_failure_score
        return metric(example, prediction, trace) if metric else True

    def traced(**inputs: Any) -> tuple[Any, list[Any]]:
        trace: list[Any] = []
        with context(trace=trace):
            try:
                return program(**inputs), list(trace)
            except AdapterParseError as error:
                failed = _failed_call(program, error, inputs, format_failure_score)
                if log_format_failures:
                    logging.warning(
                        "Failed to parse output for example. This is likely due to the LLM "
                        "response not following the adapter's formatting."
                    )
                return failed[2], [*trace, failed]
            except ProviderError:
                raise
            except Exception as error:
                if not capture_crashes:
                    raise
                logger.warning(
                    "Program raised on an example; capturing it as a failed prediction: %s: %s",
                    type(error).__name__,
                    error,
                )
                text = f"{type(error).__name__}: {error}"
                return FailedPrediction(completion_text=text), list(trace)

    results = evaluator(traced, metric=wrapped_metric).results
    data = []
    for example_ind, (example, outcome, score) in enumerate(results):
        try:
            prediction, trace = outcome
        except ValueError:
            logger.warning(
                "Failed to unpack prediction and trace. This is likely due to the LLM response "
                "not following dspy formatting."
            )
            if raise_on_error:
                raise
            continue
        row = {"example": example, "prediction": prediction, "trace": trace}
        row["example_ind"] = example_ind
        if metric:
            row["score"] = score
        data.append(row)
    return data


def _failed_call(
    program: Module, error: AdapterParseError, inputs: dict[str, Any], format_failure_score: float
) -> tuple[Any, dict[str, Any], FailedPrediction]:
    """The trace entry of a call whose completion could not be parsed."""
    signature = getattr(error, "signature", None)
    found = next((p for p in program.predictors() if p.signature == signature), None)
    if found is None:
        raise ValueError(f"Failed to find the predictor for the failed signature: {signature}")
    completion = str(getattr(error, "lm_response", "") or "")
    return found, inputs, FailedPrediction(completion, format_reward=format_failure_score)
