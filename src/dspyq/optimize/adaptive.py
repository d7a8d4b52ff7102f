"""The seed's AdaptiveOptimizer: picks the optimizer from this program's past runs.

``AdaptiveOptimizer(metric).compile(student, trainset=...)`` reads the past optimization
runs of programs shaped like ``student`` (same module kind, predictors and fields;
instructions and demos may differ) through an :class:`OptimizationHistory`, chooses a
strategy with a reason, runs it, and records the outcome so the next choice learns
from it. The choice, in order:

1. a trainset under ``tiny_trainset`` examples: ``LabeledFewShot`` (too few to bootstrap);
2. past instruction runs (COPRO, MIPROv2) that gained more than ``min_gain`` and at
   least as much as the best few-shot run: ``MIPROv2``;
3. ``BootstrapFewShot`` while the confidence in few-shot runs, (gaining runs + 1) /
   (runs + 1), is at least ``min_confidence``; below it, the seed's fallback ``COPRO``.

Events: ``adaptive_optimization_started`` / ``_completed`` / ``_failed`` with the chosen
strategy and reason. Through the queue (``client.optimize(AdaptiveOptimizer(...), ...)``)
the choice is the same and the chosen optimizer runs as an optimization run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dspyq.core.module import Module
from dspyq.optimize.teleprompter import CompileInputs, Teleprompter

__all__ = [
    "ADAPTIVE_EVENTS",
    "AdaptiveOptimizer",
    "HistoryEntry",
    "OptimizationHistory",
    "StrategyChoice",
    "program_fingerprint",
]

STARTED = "adaptive_optimization_started"
COMPLETED = "adaptive_optimization_completed"
FAILED = "adaptive_optimization_failed"
ADAPTIVE_EVENTS = (STARTED, COMPLETED, FAILED)

INSTRUCTION_OPTIMIZERS = frozenset({"COPRO", "MIPROv2"})
FEW_SHOT_OPTIMIZERS = frozenset(
    {"LabeledFewShot", "BootstrapFewShot", "BootstrapFewShotWithRandomSearch"}
)


@dataclass(frozen=True)
class HistoryEntry:
    """One past run: its optimizer, trainset size, scores before and after, and cost."""

    optimizer: str
    trainset_size: int
    baseline_score: float | None
    final_score: float | None
    cost_usd: float = 0.0
    run_id: str | None = None

    @property
    def gain(self) -> float | None:
        if self.baseline_score is None or self.final_score is None:
            return None
        return self.final_score - self.baseline_score


class OptimizationHistory(Protocol):
    """Where past runs are read and outcomes and events recorded (SQL: the store's)."""

    def entries(self, fingerprint: str) -> list[HistoryEntry]: ...

    def emit(
        self, event_type: str, correlation_id: str, data: dict[str, Any], suffix: str = ""
    ) -> None: ...


@dataclass(frozen=True)
class StrategyChoice:
    strategy: str
    reason: str
    confidence: float
    historical_runs: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "reason": self.reason,
            "confidence": round(self.confidence, 3),
            "historical_runs": self.historical_runs,
        }


def program_fingerprint(spec: dict[str, Any]) -> str:
    """What makes two saved programs "the same program" here: their kind and each
    predictor's field names and directions (not instructions or demos)."""
    shape = {
        "kind": spec.get("kind"),
        "predictors": {
            name: [(f.get("name"), f.get("io")) for f in (sig.get("fields") or [])]
            for name, sig in sorted((spec.get("signatures") or {}).items())
        },
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:32]


class AdaptiveOptimizer(Teleprompter):
    """Chooses LabeledFewShot, BootstrapFewShot, MIPROv2 or COPRO from past runs."""

    def __init__(
        self,
        metric: Callable[..., Any] | str,
        *,
        history: OptimizationHistory | None = None,
        tiny_trainset: int = 8,
        min_gain: float = 0.0,
        min_confidence: float = 0.7,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
    ) -> None:
        self.metric = metric
        self.history = history
        self.tiny_trainset = tiny_trainset
        self.min_gain = min_gain
        self.min_confidence = min_confidence
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos

    def choose(self, trainset_size: int, history: Sequence[HistoryEntry]) -> StrategyChoice:
        """The strategy for a trainset of ``trainset_size`` given ``history``, with why."""
        runs = len(history)
        if trainset_size < self.tiny_trainset:
            return StrategyChoice(
                "LabeledFewShot",
                f"the trainset has {trainset_size} examples, "
                f"under {self.tiny_trainset}: too few to bootstrap demos",
                1.0,
                runs,
            )
        gains = [(h.optimizer, h.gain) for h in history if h.gain is not None]
        instruction = [g for name, g in gains if name in INSTRUCTION_OPTIMIZERS]
        few_shot = [g for name, g in gains if name in FEW_SHOT_OPTIMIZERS]
        best_few = max(few_shot, default=0.0)
        if instruction and max(instruction) > self.min_gain and max(instruction) >= best_few:
            return StrategyChoice(
                "MIPROv2",
                f"past instruction runs gained up to "
                f"{max(instruction):.3g} (few-shot runs: {best_few:.3g})",
                1.0,
                runs,
            )
        wins = sum(1 for g in few_shot if g > self.min_gain)
        confidence = (wins + 1) / (len(few_shot) + 1)
        if confidence >= self.min_confidence:
            why = (
                "no past few-shot run of this program"
                if not few_shot
                else f"{wins} of {len(few_shot)} past few-shot runs gained"
            )
            return StrategyChoice("BootstrapFewShot", f"{why}: bootstrap demos", confidence, runs)
        return StrategyChoice(
            "COPRO",
            f"confidence in few-shot runs is {confidence:.2f} (only {wins} of {len(few_shot)} "
            f"gained), under {self.min_confidence}: falling back to instruction search",
            confidence,
            runs,
        )

    def optimizer_for(self, choice: StrategyChoice, trainset_size: int) -> Teleprompter:
        """The optimizer ``choice`` names, configured from this one's settings."""
        from dspyq.optimize.bootstrap import BootstrapFewShot
        from dspyq.optimize.copro import COPRO
        from dspyq.optimize.labeled import LabeledFewShot
        from dspyq.optimize.mipro import MIPROv2

        metric: Any = self.metric
        if choice.strategy == "LabeledFewShot":
            return LabeledFewShot(k=min(self.max_labeled_demos, max(1, trainset_size)))
        if choice.strategy == "MIPROv2":
            return MIPROv2(
                metric=metric, auto="light", max_bootstrapped_demos=self.max_bootstrapped_demos
            )
        if choice.strategy == "COPRO":
            return COPRO(metric=metric)
        return BootstrapFewShot(
            metric=metric,
            max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos,
        )

    def _compile(self, inputs: CompileInputs, **kwargs: Any) -> Module:
        """Choose, run the chosen optimizer here, and record how much it gained."""
        from dspyq.core.program import program_to_spec
        from dspyq.errors import new_correlation_id
        from dspyq.optimize.evaluate import Evaluate

        student, trainset, valset = inputs.student, inputs.trainset, inputs.valset
        history = self._history()
        fingerprint = program_fingerprint(program_to_spec(student).model_dump(mode="json"))
        choice = self.choose(len(trainset), history.entries(fingerprint))
        correlation_id = new_correlation_id()
        base = {"fingerprint": fingerprint, "trainset_size": len(trainset), **choice.as_dict()}
        history.emit(STARTED, correlation_id, base)
        metric = self._metric()
        devset = list(valset or trainset)
        try:
            evaluate = Evaluate(devset=devset, metric=metric, display_progress=False)
            baseline = float(evaluate(student).score)
            chosen = self.optimizer_for(choice, len(trainset))
            if choice.strategy != "LabeledFewShot":
                chosen.metric = metric  # type: ignore[attr-defined]
            compiled = chosen.compile(
                student,
                trainset=trainset,
                teacher=inputs.teacher,
                **({"valset": valset} if valset is not None else {}),
                **kwargs,
            )
            final = float(evaluate(compiled).score)
        except Exception as exc:
            history.emit(FAILED, correlation_id, {**base, "error": f"{type(exc).__name__}: {exc}"})
            raise
        history.emit(
            COMPLETED, correlation_id, {**base, "baseline_score": baseline, "final_score": final}
        )
        return compiled

    def _metric(self) -> Callable[..., Any]:
        if isinstance(self.metric, str):
            from dspyq.core.imports import resolve_import

            found: Callable[..., Any] = resolve_import(self.metric)
            return found
        return self.metric

    def _history(self) -> OptimizationHistory:
        if self.history is not None:
            return self.history
        # The default reads the configured database: the core stays free of SQL unless
        # this optimizer is used without a history of its own.
        from dspyq.tasks.adaptive_history import SQLOptimizationHistory

        return SQLOptimizationHistory.from_settings()
