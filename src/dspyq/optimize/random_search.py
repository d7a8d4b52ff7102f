"""``BootstrapFewShotWithRandomSearch``: try several few-shot programs, keep the best.

Candidates are numbered by seed, as in DSPy 3.4.1: ``-3`` the zero-shot student,
``-2`` labelled demos only, ``-1`` ``BootstrapFewShot`` over the trainset in order,
then one candidate per seed ``0..num_candidate_programs-1`` bootstrapped over a
shuffled trainset with a random number of demos (both drawn from ``random.Random(seed)``,
so runs are reproducible). Each is scored with ``Evaluate`` on the valset (default: the
trainset); the first best score wins.

Building a candidate (:meth:`~BootstrapFewShotWithRandomSearch.build_candidate`, a seed
in) and scoring it (:func:`evaluate_candidate`, a JSON-able :class:`CandidateScore` out)
are separate steps, so a coordinator can run candidates as tasks.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from pydantic import BaseModel, Field

from dspyq.core.context import current
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.errors import InputError
from dspyq.optimize.bootstrap import BootstrapFewShot
from dspyq.optimize.evaluate import DEFAULT_MAX_ERRORS, CandidateScore, Evaluate, Metric
from dspyq.optimize.labeled import LabeledFewShot
from dspyq.optimize.local_executor import run_rounds
from dspyq.optimize.strategy import Bench, Candidate, Folded, Outcome, RoundStrategy
from dspyq.optimize.teleprompter import CompileInputs, Teleprompter
from dspyq.settings import get_settings

__all__ = [
    "BootstrapFewShotWithRandomSearch",
    "CandidateProgram",
    "CandidateScore",
    "RandomSearchRounds",
    "evaluate_candidate",
]

logger = logging.getLogger(__name__)

ZERO_SHOT_SEED = -3
LABELED_ONLY_SEED = -2
UNSHUFFLED_SEED = -1


@dataclass(frozen=True)
class CandidateProgram:
    """One evaluated candidate, read like DSPy's dicts: ``candidate["score"]``.

    A dataclass rather than a dict on purpose: parameter discovery walks a module's
    lists and dicts, and must not find the candidates' predictors inside the program
    they are attached to.
    """

    score: float
    subscores: list[Any]
    seed: int
    program: Module

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [field.name for field in fields(self)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


def evaluate_candidate(
    program: Module,
    devset: Sequence[Example],
    *,
    metric: Metric,
    num_threads: int | None = None,
    max_errors: int | None = None,
    display_progress: bool = False,
) -> CandidateScore:
    """Score ``program`` on ``devset`` with ``Evaluate``."""
    evaluate = Evaluate(
        devset=devset,
        metric=metric,
        num_threads=num_threads,
        max_errors=max_errors,
        display_table=False,
        display_progress=display_progress,
    )
    result = evaluate(program)
    return CandidateScore(score=result.score, subscores=[row[2] for row in result.results])


class BootstrapFewShotWithRandomSearch(Teleprompter):
    """Run ``BootstrapFewShot`` under several seeds and return the best-scoring program.

    Shuffled candidates get between 1 and ``max_bootstrapped_demos`` bootstrapped demos.
    ``stop_at_score`` ends the search early once a candidate reaches it. The returned
    program carries ``candidate_programs``: every candidate, best score first. Demo
    counts and rounds default to ``settings.optimization.bootstrap``.
    """

    def __init__(
        self,
        metric: Metric,
        teacher_settings: Mapping[str, Any] | None = None,
        max_bootstrapped_demos: int | None = None,
        max_labeled_demos: int | None = None,
        max_rounds: int | None = None,
        num_candidate_programs: int = 16,
        num_threads: int | None = None,
        max_errors: int | None = None,
        stop_at_score: float | None = None,
        metric_threshold: float | None = None,
    ) -> None:
        self.metric = metric
        self.teacher_settings: dict[str, Any] = dict(teacher_settings or {})
        self.num_threads = num_threads
        self.stop_at_score = stop_at_score
        self.metric_threshold = metric_threshold
        self.min_num_samples = 1
        self.max_num_samples, self.max_labeled_demos, self.max_rounds = (
            get_settings().optimization.bootstrap.limits(
                max_bootstrapped_demos, max_labeled_demos, max_rounds
            )
        )
        self.max_errors = max_errors
        self.num_candidate_sets = num_candidate_programs
        logger.info(
            "Going to sample between %d and %d traces per predictor; "
            "will attempt to bootstrap %d candidate sets.",
            self.min_num_samples,
            self.max_num_samples,
            self.num_candidate_sets,
        )

    def _compile(
        self,
        inputs: CompileInputs,
        *,
        restrict: Container[int] | None = None,
        labeled_sample: bool = True,
    ) -> Module:
        """The best candidate program; ``restrict`` limits the search to those seeds."""
        self.trainset = list(inputs.trainset)
        self.valset = list(inputs.valset or inputs.trainset)
        bench = Bench(
            inputs.student,
            self.trainset,
            self.valset,
            inputs.teacher,
            options={"labeled_sample": labeled_sample},
        )
        strategy = RandomSearchRounds(self, restrict)
        max_errors = self._effective_max_errors()

        def score(program: Module, devset: list[Example]) -> CandidateScore:
            return evaluate_candidate(
                program,
                devset,
                metric=self.metric,
                num_threads=self.num_threads,
                max_errors=max_errors,
                display_progress=True,
            )

        run = run_rounds(strategy, bench, score=score)
        best = strategy.best(run.state)
        if best is None:
            raise InputError("restrict= excluded every candidate seed; nothing was evaluated.")
        candidates = [
            CandidateProgram(s.score, run.subscores[s.iteration], s.seed, run.programs[s.iteration])
            for s in run.state.scored
            if s.score is not None
        ]
        best_program = run.programs[best]
        best_program.candidate_programs = sorted(  # type: ignore[attr-defined]
            candidates, key=lambda c: c.score, reverse=True
        )
        logger.info("%d candidate programs found.", len(candidates))
        return best_program

    def build_candidate(
        self,
        seed: int,
        student: Module,
        *,
        trainset: Sequence[Example],
        teacher: Module | None = None,
        labeled_sample: bool = True,
    ) -> Module:
        """The candidate program for ``seed`` (see the module docstring for the seeds)."""
        examples = list(trainset)
        if seed == ZERO_SHOT_SEED:
            return student.reset_copy()
        if seed == LABELED_ONLY_SEED:
            labeled = LabeledFewShot(k=self.max_labeled_demos)
            return labeled.compile(student, trainset=examples, sample=labeled_sample)
        size = self.max_num_samples
        if seed >= 0:
            random.Random(seed).shuffle(examples)
            lowest = min(self.min_num_samples, self.max_num_samples)
            size = random.Random(seed).randint(lowest, self.max_num_samples)
        elif seed != UNSHUFFLED_SEED:
            raise InputError(f"candidate seeds start at {ZERO_SHOT_SEED}; got {seed}")
        optimizer = BootstrapFewShot(
            metric=self.metric,
            metric_threshold=self.metric_threshold,
            teacher_settings=self.teacher_settings,
            max_bootstrapped_demos=size,
            max_labeled_demos=self.max_labeled_demos,
            max_rounds=self.max_rounds,
            max_errors=self._effective_max_errors(),
        )
        return optimizer.compile(student, teacher=teacher, trainset=examples)

    def _effective_max_errors(self) -> int:
        if self.max_errors is not None:
            return self.max_errors
        configured = current().get("max_errors")
        return DEFAULT_MAX_ERRORS if configured is None else int(configured)


class SeedScore(BaseModel):
    """A scored candidate as the search state keeps it."""

    iteration: int
    seed: int
    score: float | None


class RandomSearchState(BaseModel):
    """The search so far: the seeds to try, those scored (in order), and the best."""

    seeds: list[int]
    scored: list[SeedScore] = Field(default_factory=list)
    best: int | None = None
    best_score: float | None = None
    stopped_at: float | None = None


class RandomSearchRounds(RoundStrategy[RandomSearchState]):
    """The random search as rounds: the seeds in order, the first best score wins, and
    the search ends at the first candidate reaching ``stop_at_score``."""

    state_type = RandomSearchState
    builds_apart = True

    def __init__(
        self,
        optimizer: BootstrapFewShotWithRandomSearch,
        restrict: Container[int] | None = None,
        metric_name: str | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.restrict = restrict
        metric = optimizer.metric
        self.metric_name = metric_name or getattr(metric, "__name__", type(metric).__name__)

    def start(self, bench: Bench) -> RandomSearchState:
        seeds = range(ZERO_SHOT_SEED, self.optimizer.num_candidate_sets)
        return RandomSearchState(
            seeds=[s for s in seeds if self.restrict is None or s in self.restrict]
        )

    def next_round(self, state: RandomSearchState, width: int) -> list[Candidate]:
        if state.stopped_at is not None:
            return []
        done = len(state.scored)
        return [
            Candidate(iteration=done + i + 1, seed=seed)
            for i, seed in enumerate(state.seeds[done : done + width])
        ]

    def build(self, candidate: Candidate, bench: Bench, state: RandomSearchState) -> Module:
        return self.optimizer.build_candidate(
            candidate.seed,
            bench.student,
            trainset=bench.trainset,
            teacher=bench.teacher,
            labeled_sample=bool(bench.options.get("labeled_sample", True)),
        )

    def fold(self, state: RandomSearchState, outcomes: list[Outcome]) -> list[Folded]:
        folded = []
        stop_at = self.optimizer.stop_at_score
        for outcome in sorted(outcomes, key=lambda o: o.iteration):
            if state.stopped_at is not None or outcome.iteration != len(state.scored) + 1:
                continue  # past the stop, or merged already
            state.scored.append(
                SeedScore(iteration=outcome.iteration, seed=outcome.seed, score=outcome.score)
            )
            score = outcome.score
            if score is not None and (state.best_score is None or score > state.best_score):
                logger.info("New best score: %s for seed %d", score, outcome.seed)
                state.best, state.best_score = outcome.iteration, score
            folded.append(Folded(outcome, self._event(outcome, state)))
            if score is not None and stop_at is not None and score >= stop_at:
                logger.info(
                    "Stopping early because score %s is >= stop_at_score %s", score, stop_at
                )
                state.stopped_at = stop_at
        return folded

    def _event(self, outcome: Outcome, state: RandomSearchState) -> dict[str, Any]:
        return {
            "optimizer": type(self.optimizer).__name__,
            "iteration": outcome.iteration,
            "seed": outcome.seed,
            "evaluation_score": outcome.score,
            "best_score": state.best_score,
            "metric": self.metric_name,
        }

    def best(self, state: RandomSearchState) -> int | None:
        return state.best

    def stop_reason(self, state: RandomSearchState) -> str:
        if state.stopped_at is not None:
            return f"stop_at_score {state.stopped_at} reached"
        return "every candidate evaluated"
