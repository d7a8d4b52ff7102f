"""What an optimization run is made of, as JSON: its plan, candidates and checkpoint.

An optimizer crosses the queue as its class name and constructor settings (its metric
as an import path); the worker rebuilds it and builds one candidate program per seed.
A run is a list of rounds, each a few candidate seeds: the coordinator fans a round out
as one task per candidate and checkpoints after it, so a restarted coordinator
resumes at the next round. Nothing here imports Celery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.errors import InputError
from dspyq.lm.lm import LM
from dspyq.optimize.bootstrap import BootstrapFewShot
from dspyq.optimize.labeled import LabeledFewShot
from dspyq.optimize.random_search import (
    ZERO_SHOT_SEED,
    BootstrapFewShotWithRandomSearch,
)
from dspyq.optimize.teleprompter import Teleprompter

RANDOM_SEARCH = "BootstrapFewShotWithRandomSearch"
SINGLE_ROUND = ("LabeledFewShot", "BootstrapFewShot")
SUPPORTED_OPTIMIZERS = (*SINGLE_ROUND, RANDOM_SEARCH)
DEFAULT_CANDIDATES_PER_ROUND = 4


def optimizer_config(optimizer: Teleprompter) -> dict[str, Any]:
    """The constructor settings that rebuild ``optimizer`` on a worker (metric aside).

    Raises InputError for an optimizer runs cannot carry yet.
    """
    name = type(optimizer).__name__
    if isinstance(optimizer, BootstrapFewShotWithRandomSearch):
        return {
            "max_bootstrapped_demos": optimizer.max_num_samples,
            "max_labeled_demos": optimizer.max_labeled_demos,
            "max_rounds": optimizer.max_rounds,
            "num_candidate_programs": optimizer.num_candidate_sets,
            "max_errors": optimizer.max_errors,
            "stop_at_score": optimizer.stop_at_score,
            "metric_threshold": optimizer.metric_threshold,
        }
    if isinstance(optimizer, BootstrapFewShot):
        return {
            "max_bootstrapped_demos": optimizer.max_bootstrapped_demos,
            "max_labeled_demos": optimizer.max_labeled_demos,
            "max_rounds": optimizer.max_rounds,
            "max_errors": optimizer.max_errors,
            "metric_threshold": optimizer.metric_threshold,
        }
    if isinstance(optimizer, LabeledFewShot):
        return {"k": optimizer.k}
    raise InputError(
        f"{name} cannot run on the queue yet; supported: {', '.join(SUPPORTED_OPTIMIZERS)}",
        context={"optimizer": name, "supported": list(SUPPORTED_OPTIMIZERS)},
    )


class ExampleJSON(BaseModel):
    """An Example as it crosses the queue: its fields and which of them are inputs."""

    fields: dict[str, Any]
    inputs: list[str]

    @classmethod
    def of(cls, example: Example) -> ExampleJSON:
        return cls(fields=dict(example.items()), inputs=sorted(example.inputs().keys()))

    def example(self) -> Example:
        return Example(**self.fields).with_inputs(*self.inputs)


class RunPlan(BaseModel):
    """Everything fixed when a run starts; stored as the run row's ``config``."""

    model_config = ConfigDict(extra="forbid")

    optimizer: str
    settings: dict[str, Any]
    metric: str
    program: dict[str, Any]
    trainset: list[ExampleJSON]
    valset: list[ExampleJSON]
    lm: str
    lm_kwargs: dict[str, Any] = Field(default_factory=dict)
    teacher_lm: str | None = None
    run_name: str
    budget_usd: float | None = None
    max_lm_calls: int | None = None
    candidates_per_round: int = DEFAULT_CANDIDATES_PER_ROUND
    num_threads: int = 4

    def seeds(self) -> list[int]:
        """Every candidate's seed, in order (one candidate for single-round optimizers)."""
        if self.optimizer == RANDOM_SEARCH:
            return list(range(ZERO_SHOT_SEED, int(self.settings["num_candidate_programs"])))
        return [0]

    def rounds(self) -> list[list[int]]:
        """The seeds of each round."""
        seeds = self.seeds()
        if self.optimizer != RANDOM_SEARCH:
            return [seeds]
        size = max(1, self.candidates_per_round)
        return [seeds[i : i + size] for i in range(0, len(seeds), size)]

    def iteration_of(self, seed: int) -> int:
        """The candidate's 1-based number in the run."""
        return self.seeds().index(seed) + 1


class CandidateOutcome(BaseModel):
    """One evaluated candidate: its score and program, or why it has none."""

    iteration: int
    seed: int
    round: int
    task_id: str = ""
    score: float | None = None
    program: dict[str, Any] | None = None
    instruction: str | None = None
    error: dict[str, Any] | None = None


class CandidateSummary(BaseModel):
    """A candidate as the checkpoint keeps it (without its program)."""

    iteration: int
    seed: int
    score: float | None
    error: str | None = None


class RunCheckpoint(BaseModel):
    """The coordinator's state after a round: where to resume and the best so far."""

    round: int = 0
    dispatched: int = -1
    candidates: list[CandidateSummary] = Field(default_factory=list)
    best: CandidateOutcome | None = None
    lm_calls: int = 0
    cost_usd: float = 0.0
    saved: dict[str, Any] | None = None


def build_candidate(
    plan: RunPlan,
    seed: int,
    student: Module,
    metric: Callable[..., Any],
    trainset: Sequence[Example],
    teacher_lm: LM | None,
) -> Module:
    """The candidate program for ``seed``, built as the in-process optimizer would."""
    teacher_settings = {} if teacher_lm is None else {"lm": teacher_lm}
    settings = dict(plan.settings)
    if plan.optimizer == RANDOM_SEARCH:
        search = BootstrapFewShotWithRandomSearch(
            metric=metric, teacher_settings=teacher_settings, **settings
        )
        return search.build_candidate(seed, student, trainset=trainset)
    if plan.optimizer == "BootstrapFewShot":
        bootstrap = BootstrapFewShot(metric=metric, teacher_settings=teacher_settings, **settings)
        return bootstrap.compile(student, trainset=trainset)
    if plan.optimizer == "LabeledFewShot":
        return LabeledFewShot(**settings).compile(student, trainset=trainset)
    raise InputError(f"unsupported optimizer {plan.optimizer!r}")


def first_instruction(program: Module) -> str | None:
    """The instructions of the program's first predictor, if it has one."""
    for predictor in program.predictors():
        signature = getattr(predictor, "signature", None)
        return None if signature is None else str(signature.instructions)
    return None
