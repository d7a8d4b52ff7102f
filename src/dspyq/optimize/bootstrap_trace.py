"""One teacher run on one training example, its trace turned into augmented demos.

:func:`bootstrap_example` is a program and an example in, a JSON-able
:class:`BootstrapOutcome` out, so the examples of ``BootstrapFewShot`` can run as
separate tasks. Semantics follow DSPy 3.4.1.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

from dspyq.core.context import context, current
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module
from dspyq.optimize.demo_seed import demo_seed
from dspyq.optimize.evaluate import Metric

__all__ = ["ROUND_TEMPERATURE", "BootstrapOutcome", "bootstrap_example"]

logger = logging.getLogger(__name__)

ROUND_TEMPERATURE = 1.0
"""Temperature of retry rounds (``round_idx > 0``), which also carry a ``rollout_id``:
a fresh sample instead of the cached answer that already failed."""


class BootstrapOutcome(BaseModel):
    """What one teacher run on one training example produced.

    ``demos`` maps predictor names (as in ``named_predictors()``) to the demo records
    gathered for them; empty unless ``success``. ``error`` describes an exception
    raised by the program or the metric; in-process, :attr:`exception` keeps it.
    """

    success: bool
    demos: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    error: str | None = None
    _exception: Exception | None = PrivateAttr(default=None)

    @property
    def exception(self) -> Exception | None:
        return self._exception


def bootstrap_example(
    teacher: Module,
    example: Example,
    *,
    metric: Metric | None = None,
    metric_threshold: float | None = None,
    teacher_settings: Mapping[str, Any] | None = None,
    round_idx: int = 0,
) -> BootstrapOutcome:
    """Run ``teacher`` on ``example`` with tracing on; keep the trace if the metric passes.

    The example is hidden from the teacher's own demos for the run (it would otherwise
    read the answer off its prompt), and restored afterwards; concurrent calls must
    therefore use separate teacher copies. Rounds after the first sample at
    temperature 1.0 under a ``rollout_id``, so they are not answered from the cache.
    Exceptions from the program or the metric are returned in the outcome, not raised.
    """
    names = {id(predictor): name for name, predictor in teacher.named_predictors()}
    try:
        with context(trace=[], **dict(teacher_settings or {})):
            lm = current().lm
            fresh_rollout: dict[str, Any] = {}
            if round_idx > 0 and lm is not None:
                fresh_rollout["lm"] = lm.copy(rollout_id=round_idx, temperature=ROUND_TEMPERATURE)
            with context(**fresh_rollout) as config:
                prediction = _run_without_example(teacher, example)
                trace = list(config.trace or [])
            passed = _metric_passes(metric, metric_threshold, example, prediction, trace)
    except Exception as exc:
        logger.error(
            "Failed to run or to evaluate example %r with %r due to %s.", example, metric, exc
        )
        outcome = BootstrapOutcome(success=False, error=f"{type(exc).__name__}: {exc}")
        outcome._exception = exc
        return outcome
    if not passed:
        return BootstrapOutcome(success=False)
    return BootstrapOutcome(success=True, demos=_demos_from_trace(trace, names))


def _run_without_example(teacher: Module, example: Example) -> Any:
    """``teacher(**example.inputs())`` with ``example`` removed from every predictor's demos."""
    predictors = teacher.named_predictors()
    saved = {name: predictor.demos for name, predictor in predictors}
    for _, predictor in predictors:
        predictor.demos = [demo for demo in predictor.demos if demo != example]
    try:
        return teacher(**example.inputs())
    finally:
        for name, predictor in predictors:
            predictor.demos = saved[name]


def _metric_passes(
    metric: Metric | None,
    threshold: float | None,
    example: Example,
    prediction: Any,
    trace: list[Any],
) -> bool:
    """No metric accepts everything; a threshold compares the value, else its truth counts."""
    if metric is None:
        return True
    value = metric(example, prediction, trace)
    if threshold:
        return bool(value >= threshold)
    return bool(value)


def _demos_from_trace(
    trace: list[tuple[Any, dict[str, Any], Prediction]], names: Mapping[int, str]
) -> dict[str, list[dict[str, Any]]]:
    """One augmented demo per traced predictor (calls of unknown predictors are skipped).

    A predictor called several times in one run keeps one of its calls: the last one
    or, with even odds, one of the others, chosen by a seed derived from the calls
    themselves (DSPy's seed, see demo_seed), so the same call is kept as in DSPy.
    """
    gathered: dict[str, list[dict[str, Any]]] = {}
    for predictor, inputs, outputs in trace:
        name = names.get(id(predictor))
        if name is None:
            continue
        gathered.setdefault(name, []).append({"augmented": True, **inputs, **dict(outputs.items())})
    chosen: dict[str, list[dict[str, Any]]] = {}
    for name, demos in gathered.items():
        if len(demos) > 1:
            rng = random.Random(demo_seed(demos))
            demos = [rng.choice(demos[:-1]) if rng.random() < 0.5 else demos[-1]]
        chosen[name] = demos
    return chosen
