"""Continuous re-optimization (the seed's RealTimeEngine): ``client.improve(name, ...)``.

One improvement run: the program's feedback becomes examples
(:mod:`dspyq.api_client.feedback_examples`); an optimization run on the queue trains a
candidate on most of them; the candidate and the version the alias serves are scored on
the held-out rest through the queue; only a candidate that beats the current version by
``min_gain`` is saved as the next version (its lineage: parent version, run, feedback
rows) and deployed through the pipeline, as a canary first. Anything else changes
nothing, and the returned :class:`Improvement` says why. Events, under the run's
correlation id: ``real_time_adaptation_start``, then ``real_time_adaptation_success`` or
``real_time_adaptation_failed`` (with the reason).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from dspyq.api_client.feedback_examples import feedback_examples
from dspyq.deploy.plan import checked_canary, checked_name
from dspyq.errors import DspyqError, InputError, new_correlation_id
from dspyq.events import Event
from dspyq.program_ref import check_alias
from dspyq.store.events import EventStore
from dspyq.store.lineage import LineageStore
from dspyq.store.resolve import ProgramResolver
from dspyq.tasks.metrics import metric_path

if TYPE_CHECKING:
    from dspyq.api_client.client import Client
    from dspyq.core.module import Module
    from dspyq.optimize.teleprompter import Teleprompter

__all__ = ["ADAPTATION_EVENTS", "Improvement", "improve"]

START = "real_time_adaptation_start"
SUCCESS = "real_time_adaptation_success"
FAILED = "real_time_adaptation_failed"
ADAPTATION_EVENTS = (START, SUCCESS, FAILED)


class Improvement(BaseModel):
    """How an improvement run ended: ``deployed``, ``unchanged`` (not better, or too
    little feedback) or ``failed``; ``reason`` says why in a sentence."""

    name: str
    alias: str
    status: Literal["deployed", "unchanged", "failed"]
    reason: str
    correlation_id: str
    current_version: int
    version: int | None = None
    current_score: float | None = None
    candidate_score: float | None = None
    run_id: str | None = None
    deployment_id: str | None = None
    feedback_rows: int = 0
    optimizer: str | None = None


def improve(
    client: Client,
    name: str,
    *,
    alias: str = "production",
    optimizer: Teleprompter | None = None,
    metric: Any,
    min_gain: float = 0.0,
    min_feedback: int = 20,
    canary: float | None = 0.1,
    holdout: float = 0.3,
    canary_window: float | None = None,
    min_samples: int | None = None,
    timeout: float | None = 1800.0,
) -> Improvement:
    """One improvement run of ``name@alias`` (see the module's docstring)."""
    name, alias = checked_name(name), check_alias(alias)
    path = metric_path(metric)
    fraction = checked_canary(canary)
    for label, value in (("min_gain", min_gain), ("holdout", holdout)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InputError(f"{label} is a number, not {value!r:.80}")
    if not 0.0 < holdout < 1.0:
        raise InputError(f"holdout is the share of examples held out, in (0, 1), not {holdout}")
    if isinstance(min_feedback, bool) or not isinstance(min_feedback, int) or min_feedback < 1:
        raise InputError(f"min_feedback is a whole number of at least 1, not {min_feedback!r:.80}")
    target = ProgramResolver(client.engine).target(name, alias)
    outcome = Improvement(
        name=name,
        alias=alias,
        status="unchanged",
        reason="",
        correlation_id=new_correlation_id(),
        current_version=target.version,
    )
    events = EventStore(client.engine)
    _emit(events, outcome, START, "start", trigger="improve", metric=path, min_gain=min_gain)
    try:
        _run(
            client,
            outcome,
            optimizer,
            path,
            float(min_gain),
            min_feedback,
            fraction,
            holdout,
            canary_window,
            min_samples,
            timeout,
        )
    except DspyqError as exc:
        outcome.status, outcome.reason = "failed", f"{type(exc).__name__}: {exc.message}"
    if outcome.status == "deployed":
        _emit(events, outcome, SUCCESS, "success", **_figures(outcome))
    else:
        _emit(events, outcome, FAILED, "failed", reason=outcome.reason, **_figures(outcome))
    return outcome


def _run(
    client: Client,
    outcome: Improvement,
    optimizer: Teleprompter | None,
    metric: str,
    min_gain: float,
    min_feedback: int,
    canary: float | None,
    holdout: float,
    canary_window: float | None,
    min_samples: int | None,
    timeout: float | None,
) -> None:
    data = feedback_examples(client.engine, outcome.name, holdout)
    outcome.feedback_rows = data.rows
    if data.rows < min_feedback:
        outcome.reason = (
            f"{outcome.name} has {data.rows} feedback rows and an improvement needs "
            f"min_feedback={min_feedback}: nothing was changed"
        )
        return
    if not data.train or not data.heldout:
        outcome.reason = (
            f"the feedback of {outcome.name} covers {len(data.train) + len(data.heldout)} "
            "distinct inputs: too few to both train and judge a candidate"
        )
        return
    current = client.load_program(outcome.name, outcome.current_version)
    chosen = optimizer if optimizer is not None else _default_optimizer(metric)
    outcome.optimizer = type(chosen).__name__
    run = client.optimize(
        chosen, current, trainset=data.train, metric=metric, run_name=f"{outcome.name}-candidates"
    )
    outcome.run_id = run.id
    choice = getattr(run, "choice", None)  # an AdaptiveOptimizer's run: what it chose
    if isinstance(choice, dict):
        outcome.optimizer = f"{outcome.optimizer}:{choice.get('strategy')}"
    candidate = _with_lms_of(run.result(timeout=timeout), current)
    outcome.current_score = _score(client, current, data.heldout, metric, timeout)
    outcome.candidate_score = _score(client, candidate, data.heldout, metric, timeout)
    if hasattr(run, "scored"):  # the AdaptiveOptimizer learns this run's held-out gain
        run.scored(outcome.current_score, outcome.candidate_score)
    if outcome.candidate_score <= outcome.current_score + min_gain:
        outcome.reason = (
            f"the candidate scored {outcome.candidate_score:.1f} on {len(data.heldout)} held-out "
            f"examples against {outcome.current_score:.1f} for version {outcome.current_version}: "
            f"not better by more than min_gain={min_gain:g}, so nothing was deployed"
        )
        return
    version = client.save_program(
        outcome.name, candidate, score=outcome.candidate_score, run_id=run.id
    )
    outcome.version = version
    LineageStore(client.engine).record(
        outcome.name,
        version,
        parent_version=outcome.current_version,
        run_id=run.id,
        feedback_ids=data.feedback_ids,
    )
    deployment = _deploy(client, outcome, canary, canary_window, min_samples)
    outcome.deployment_id = deployment.correlation_id
    outcome.status = "deployed"
    share = "all traffic" if canary is None else f"a {canary:.0%} canary"
    outcome.reason = (
        f"version {version} scored {outcome.candidate_score:.1f} against "
        f"{outcome.current_score:.1f}; deployed to {outcome.name}@{outcome.alias} as {share}"
    )


def _with_lms_of(candidate: Module, current: Module) -> Module:
    """``candidate`` serving on the LMs ``current`` was saved with (a run saves its
    programs without them), so it deploys to the same pool."""
    lms = {name: predictor.lm for name, predictor in current.named_predictors()}
    for name, predictor in candidate.named_predictors():
        if predictor.lm is None and lms.get(name) is not None:
            predictor.lm = lms[name]
    return candidate


def _default_optimizer(metric: str) -> Teleprompter:
    from dspyq.optimize.adaptive import AdaptiveOptimizer

    return AdaptiveOptimizer(metric=metric)


def _score(
    client: Client, program: Any, devset: list[Any], metric: str, timeout: float | None
) -> float:
    result = client.evaluate(
        program, devset, metric=metric, display_progress=False, timeout=timeout
    )
    return float(result.score)


def _deploy(
    client: Client,
    outcome: Improvement,
    canary: float | None,
    canary_window: float | None,
    min_samples: int | None,
) -> Any:
    return client.deploy(
        outcome.name,
        outcome.version,
        alias=outcome.alias,
        canary=canary,
        canary_window=canary_window,
        min_samples=min_samples,
    )


def _figures(outcome: Improvement) -> dict[str, Any]:
    return outcome.model_dump(
        include={
            "version",
            "current_score",
            "candidate_score",
            "run_id",
            "deployment_id",
            "feedback_rows",
            "optimizer",
            "status",
        }
    )


def _emit(
    events: EventStore, outcome: Improvement, event_type: str, suffix: str, **data: Any
) -> None:
    events.append(
        Event(
            event_id=f"{outcome.correlation_id}:{suffix}",
            event_type=event_type,
            correlation_id=outcome.correlation_id,
            data={
                "name": outcome.name,
                "alias": outcome.alias,
                "current_version": outcome.current_version,
                **data,
            },
        )
    )
