"""The in-process executor of round strategies: what ``compile()`` runs.

One candidate per round (unless the strategy's candidates do not depend on one
another), built then scored by the optimizer's ``Evaluate``; each counted outcome is emitted as an ``optimization_iteration`` event with
the strategy's DSPy-like data. Errors are raised, as in DSPy (a queued run records
them per candidate instead).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic

from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.observe import emit
from dspyq.optimize.evaluate import CandidateScore
from dspyq.optimize.strategy import Bench, Outcome, RoundStrategy, StateT

__all__ = ["LocalRun", "run_rounds"]


@dataclass
class LocalRun(Generic[StateT]):
    """The final state and every candidate program built, by iteration."""

    state: StateT
    programs: dict[int, Module] = field(default_factory=dict)
    subscores: dict[int, list[Any]] = field(default_factory=dict)


def run_rounds(
    strategy: RoundStrategy[StateT],
    bench: Bench,
    *,
    score: Callable[[Module, list[Example]], CandidateScore],
) -> LocalRun[StateT]:
    """Run ``strategy`` to its end in this process, scoring with ``score(program, devset)``."""
    run = LocalRun(strategy.start(bench))
    while True:
        if strategy.needs_preparation(run.state):
            run.state = strategy.prepare(run.state, bench)
        candidates = strategy.next_round(run.state, 1)
        if not candidates:
            return run
        outcomes = []
        for candidate in candidates:
            program = strategy.build(candidate, bench, run.state)
            scored = score(program, strategy.devset(candidate, bench, run.state))
            run.programs[candidate.iteration] = program
            run.subscores[candidate.iteration] = scored.subscores
            outcomes.append(
                Outcome(iteration=candidate.iteration, seed=candidate.seed, score=scored.score)
            )
        for folded in strategy.fold(run.state, outcomes):
            emit("optimization_iteration", folded.event)
