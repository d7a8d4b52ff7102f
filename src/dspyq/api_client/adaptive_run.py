"""``client.optimize(AdaptiveOptimizer(metric), program, ...)``: the choice made here, from
the SQL history, and the chosen optimizer sent as an ordinary optimization run.

The returned :class:`AdaptiveRun` is a :class:`~dspyq.api_client.runs.Run` that records
``adaptive_optimization_completed`` (or ``_failed``) once the run has ended and it was
waited on, so the next choice learns from its scores: the best candidate's over the
student's (which a run of one candidate does not score itself: it is scored on the pool
once the run ended).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dspyq.api_client.runs import Run
from dspyq.core.program import program_to_spec
from dspyq.errors import DspyqError, new_correlation_id
from dspyq.optimize.adaptive import (
    COMPLETED,
    FAILED,
    STARTED,
    AdaptiveOptimizer,
    program_fingerprint,
)
from dspyq.tasks.adaptive_history import SQLOptimizationHistory

if TYPE_CHECKING:
    from dspyq.api_client.client import Client
    from dspyq.core.module import Module

__all__ = ["AdaptiveRun", "start_adaptive_run"]

logger = logging.getLogger(__name__)


def start_adaptive_run(
    client: Client, optimizer: AdaptiveOptimizer, program: Module, **options: Any
) -> AdaptiveRun:
    """Choose the strategy for ``program`` and start it (options as ``start_run``'s)."""
    from dspyq.api_client.runs import start_run

    history = SQLOptimizationHistory(client.engine)
    trainset = list(options.pop("trainset"))
    fingerprint = program_fingerprint(program_to_spec(program).model_dump(mode="json"))
    choice = optimizer.choose(len(trainset), history.entries(fingerprint))
    base = {"fingerprint": fingerprint, "trainset_size": len(trainset), **choice.as_dict()}
    correlation_id = new_correlation_id()
    options["metric"] = options.get("metric") or optimizer.metric
    try:
        run = start_run(
            client,
            optimizer.optimizer_for(choice, len(trainset)),
            program,
            trainset=trainset,
            **options,
        )
    except DspyqError as exc:
        history.emit(FAILED, correlation_id, {**base, "error": exc.message})
        raise
    history.emit(STARTED, correlation_id, {**base, "run_id": run.id})
    return AdaptiveRun(client, run.id, history, correlation_id, {**base, "run_id": run.id})


class AdaptiveRun(Run):
    """A run an AdaptiveOptimizer chose; ``choice`` holds the strategy and reason."""

    def __init__(
        self,
        client: Client,
        run_id: str,
        history: SQLOptimizationHistory,
        adaptive_id: str,
        choice: dict[str, Any],
    ) -> None:
        super().__init__(client, run_id)
        self.history = history
        self.adaptive_id = adaptive_id
        self.choice = choice

    def scored(self, baseline: float, final: float) -> None:
        """Record the student's and the result's scores measured after the run (e.g. on
        held-out examples): the history then knows this run's gain."""
        figures = {"baseline_score": baseline, "final_score": final, "scored_on": "heldout"}
        self.history.emit(COMPLETED, self.adaptive_id, {**self.choice, **figures}, ":scored")

    def wait(self, timeout: float | None = None, progress: bool = False) -> str:
        status = super().wait(timeout, progress)
        record = self.record()
        checkpoint = record.checkpoint or {}
        if status in ("succeeded", "budget_exhausted"):
            scores = [
                c.get("score")
                for c in sorted(
                    checkpoint.get("candidates") or [], key=lambda c: int(c["iteration"])
                )
                if isinstance(c.get("score"), int | float)
            ]
            baseline = scores[0] if len(scores) > 1 else self._student_score(record, timeout)
            figures = {
                "baseline_score": baseline,
                "final_score": record.best_score,
                "cost_usd": checkpoint.get("cost_usd") or 0.0,
            }
            self.history.emit(COMPLETED, self.adaptive_id, {**self.choice, **figures})
        else:
            self.history.emit(
                FAILED, self.adaptive_id, {**self.choice, "error": record.stop_reason}
            )
        return status

    def _student_score(self, record: Any, timeout: float | None) -> float | None:
        """The student's score on the devset the run scored its one candidate on (the
        valset, else the trainset), on the pool: a run of one candidate (LabeledFewShot,
        BootstrapFewShot) measures no baseline itself, and without one its gain is
        unknown to the next choice. None (logged) when it cannot be scored."""
        from dspyq.core.program import program_from_spec
        from dspyq.tasks.optimization import RunPlan

        try:
            plan = RunPlan.model_validate(record.config or {})
            given = plan.valset if plan.valset_given and plan.valset else plan.trainset
            student = program_from_spec(plan.program, self._client.settings.allowed_imports)
            result = self._client.evaluate(
                student,
                [row.example() for row in given],
                plan.metric,
                plan.lm,
                lm_kwargs=plan.lm_kwargs,
                display_progress=False,
                timeout=timeout,
            )
        except DspyqError:
            logger.warning("could not score the student of run %s", self.id, exc_info=True)
            return None
        return float(result.score)
