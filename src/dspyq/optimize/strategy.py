"""Round strategies: each optimizer's algorithm written once, run by either executor.

An optimizer that scores candidate programs is a loop of rounds: (optionally) prepare
with the LM (proposals), build a round's candidates, score each on its devset, fold the
scores into the state, decide the next round. A :class:`RoundStrategy` holds that
algorithm; the state it folds into is a pydantic model (JSON, so a queued run can keep
it in its checkpoint). Two executors drive it:

- in-process (:func:`dspyq.optimize.local_executor.run_rounds`): one candidate at a
  time, the scoring on ``num_threads`` threads, events emitted as DSPy-like dicts;
- on the queue (:mod:`dspyq.tasks.optimize_rounds`): rounds of several candidates as
  Celery chords, each scored in parts, the state checkpointed in the run row between
  rounds.

A strategy's decisions depend only on its state and the outcomes folded in candidate
order, never on how many candidates a round held: so both executors reach the same
program. Nothing here imports Celery.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from dspyq.core.context import current
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.optimize.registry import registration

__all__ = [
    "Bench",
    "Candidate",
    "Folded",
    "OneCandidateRounds",
    "Outcome",
    "RoundStrategy",
    "WholeCompileRounds",
]


class Candidate(BaseModel):
    """One program a round scores: its 1-based number in the run and how to build it."""

    iteration: int
    seed: int = 0
    proposal: dict[str, Any] | None = None
    """What the strategy needs to build it beyond the seed (COPRO: an instruction)."""
    indices: list[int] | None = None
    """Positions in the devset it is scored on (None: all of it)."""
    full_eval: bool = True
    """Scored on the whole devset: only such scores compete for the best program."""


class Outcome(BaseModel):
    """A candidate's score (a percentage, as ``Evaluate`` gives it), or why it has none."""

    iteration: int
    seed: int = 0
    score: float | None = None
    error: str | None = None
    instruction: str | None = None
    prefix: str | None = None


@dataclass
class Folded:
    """An outcome the strategy counted, with the data of its in-process event."""

    outcome: Outcome
    event: dict[str, Any]


@dataclass
class Bench:
    """What building and scoring candidates needs, live: the student and the data."""

    student: Module
    trainset: list[Example]
    valset: list[Example] | None = None
    teacher: Module | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    """``compile`` options the strategy builds with (e.g. ``labeled_sample``)."""


StateT = TypeVar("StateT", bound=BaseModel)


class RoundStrategy(ABC, Generic[StateT]):
    """The algorithm of one optimizer as rounds (see the module docstring)."""

    state_type: type[StateT]
    builds_apart: bool = False
    """Building a candidate calls the LM (bootstrapping): a queued run builds each in a
    task of its own, then scores the built program in parts."""

    @abstractmethod
    def start(self, bench: Bench) -> StateT:
        """The state before the first round."""

    def load(self, data: Mapping[str, Any]) -> StateT:
        """A state as a checkpoint stored it."""
        return self.state_type.model_validate(data)

    def needs_preparation(self, state: StateT) -> bool:
        """Whether :meth:`prepare` must run (with the LM) before the next round."""
        return False

    def prepare(self, state: StateT, bench: Bench) -> StateT:
        """The LM work the next round depends on (proposals); returns the new state."""
        return state

    @abstractmethod
    def next_round(self, state: StateT, width: int) -> list[Candidate]:
        """The candidates to score next (none: the search is over): up to ``width``, or
        a whole pool whose candidates do not depend on one another's scores.

        Depends on ``state`` only, so asking again after a crash asks the same."""

    @abstractmethod
    def build(self, candidate: Candidate, bench: Bench, state: StateT) -> Module:
        """The candidate's program (may call the LM: bootstrapping)."""

    def devset(self, candidate: Candidate, bench: Bench, state: StateT) -> list[Example]:
        """The examples the candidate is scored on: the valset, else the trainset."""
        return list(bench.valset or bench.trainset)

    @abstractmethod
    def fold(self, state: StateT, outcomes: list[Outcome]) -> list[Folded]:
        """Fold a round's outcomes (in candidate order) into ``state``; the ones counted."""

    @abstractmethod
    def best(self, state: StateT) -> int | None:
        """The iteration of the best candidate so far (None: none yet)."""

    def stop_reason(self, state: StateT) -> str:
        """Why the search ended, once :meth:`next_round` asks for nothing more."""
        return "every candidate evaluated"


class OneCandidateState(BaseModel):
    """A one-candidate run: its outcome, once scored."""

    scored: Outcome | None = None


class OneCandidateRounds(RoundStrategy[OneCandidateState]):
    """One round of one candidate, ``optimizer.compile(student, trainset=...)``:
    LabeledFewShot and BootstrapFewShot, whose ``compile`` scores nothing (a queued run
    scores their program to report it)."""

    state_type = OneCandidateState
    builds_apart = True

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer

    def start(self, bench: Bench) -> OneCandidateState:
        return OneCandidateState()

    def next_round(self, state: OneCandidateState, width: int) -> list[Candidate]:
        return [] if state.scored is not None else [Candidate(iteration=1)]

    def build(self, candidate: Candidate, bench: Bench, state: OneCandidateState) -> Module:
        compiled: Module = self.optimizer.compile(
            bench.student, trainset=bench.trainset, teacher=bench.teacher
        )
        return compiled

    def fold(self, state: OneCandidateState, outcomes: list[Outcome]) -> list[Folded]:
        if state.scored is not None or not outcomes:
            return []
        state.scored = outcomes[0]
        return [Folded(outcomes[0], {"iteration": 1, "evaluation_score": outcomes[0].score})]

    def best(self, state: OneCandidateState) -> int | None:
        scored = state.scored
        return None if scored is None or scored.score is None else scored.iteration


class WholeCompileRounds(OneCandidateRounds):
    """Any optimizer's own ``compile`` as the one candidate of one round: optimizers
    without a round strategy of their own, run on the queue as a single task (their
    program is scored to report it, as a one-candidate run's is)."""

    def __init__(self, optimizer: Any, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(optimizer)
        self.options = dict(options or {})

    def build(self, candidate: Candidate, bench: Bench, state: OneCandidateState) -> Module:
        found = registration(type(self.optimizer))
        if found is not None and found.sets_predictor_lms:
            _give_run_lm(bench.student)
        data = {"trainset": bench.trainset, "teacher": bench.teacher, "valset": bench.valset}
        compiled: Module = self.optimizer.compile(
            bench.student, **_accepted(self.optimizer.compile, data), **self.options
        )
        for name in () if found is None else found.unstored:
            vars(compiled).pop(name, None)
        if "forward" in vars(compiled):  # a per-instance forward is lost in a stored program
            raise TypeError(
                f"{type(self.optimizer).__name__} compiled a program whose forward is set on "
                "the instance; such a program cannot be stored"
            )
        return compiled


def _give_run_lm(student: Module) -> None:
    """Give the predictors without an LM the run's (bound as ``lm``): one LM for all of
    them, as ``student.set_lm(lm)`` does, so multitask fine-tuning runs one job for it."""
    lm = current().get("lm")
    for predictor in student.predictors():
        if predictor.lm is None:
            predictor.lm = lm


def _accepted(compile_fn: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The run's data ``compile`` takes: SIMBA's has no ``teacher`` or ``valset``, as in
    DSPy. A teacher given to one that takes none is passed, to fail as it would in-process."""
    parameters = inspect.signature(compile_fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return data
    return {
        key: value
        for key, value in data.items()
        if key in parameters or (key == "teacher" and value is not None)
    }
