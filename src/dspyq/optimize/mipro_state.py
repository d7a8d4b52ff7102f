"""The state of MIPROv2's search, as JSON, and the helpers that read it.

:class:`MiproState` is what the search strategy (:mod:`dspyq.optimize.mipro_search`)
folds its trials into: the search space steps 1 and 2 found (instructions and demo
sets per predictor), the trials so far, and its random generators' states.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.errors import InputError

__all__ = [
    "DemoCandidates",
    "MiproState",
    "TrialParams",
    "TrialResult",
    "create_minibatch",
    "demo_json",
    "json_state",
    "minibatch_indices",
    "params_key",
    "program_for",
    "python_state",
    "split_valset",
]

TrialParams = dict[str, int]
"""``{"<i>_predictor_instruction": index, "<i>_predictor_demos": index, ...}``, i the
predictor's position in ``program.predictors()`` (optuna's parameter names in DSPy)."""

DemoCandidates = dict[int, list[list[Any]]]
"""Demo sets per predictor index: ``candidates[i][set_index]`` is a list of demos."""


class TrialResult(BaseModel):
    """One scored combination: the trial number (DSPy's, from 1), the params, the score
    and on how many examples (``full_eval`` when on the whole valset)."""

    number: int
    params: TrialParams
    score: float
    batch_size: int
    full_eval: bool
    example_indices: list[int] | None = None
    """Positions in the valset of the minibatch scored (None: the whole valset)."""


def minibatch_indices(size: int, batch_size: int, rng: random.Random | None = None) -> list[int]:
    """``batch_size`` positions out of ``size``, drawn without replacement (all if fewer)."""
    return (rng or random.Random()).sample(range(size), min(batch_size, size))


def create_minibatch(
    examples: Sequence[Example], batch_size: int = 50, rng: random.Random | None = None
) -> list[Example]:
    """``batch_size`` examples drawn without replacement (all of them if fewer)."""
    return [examples[i] for i in minibatch_indices(len(examples), batch_size, rng)]


def program_for(
    program: Module,
    params: Mapping[str, int],
    instruction_candidates: Mapping[int, list[str]],
    demo_candidates: DemoCandidates | None,
) -> Module:
    """A copy of ``program`` with the chosen instruction and demo set per predictor."""
    candidate = program.deepcopy()
    for i, predictor in enumerate(candidate.predictors()):
        chosen = params.get(f"{i}_predictor_instruction")
        if chosen is not None:
            predictor.signature = predictor.signature.with_instructions(
                instruction_candidates[i][chosen]
            )
        demos = params.get(f"{i}_predictor_demos")
        if demo_candidates and demos is not None:
            predictor.demos = list(demo_candidates[i][demos])
    return candidate


def split_valset(
    trainset: Sequence[Example], valset: Sequence[Example] | None
) -> tuple[list[Example], list[Example]]:
    """Without a valset, the last 80% of the trainset (at most 1000) becomes it."""
    train = list(trainset)
    if not train:
        raise InputError("Trainset cannot be empty.")
    if valset is None:
        if len(train) < 2:
            raise InputError("Trainset must have at least 2 examples if no valset specified.")
        cutoff = len(train) - min(1000, max(1, int(len(train) * 0.80)))
        return train[:cutoff], train[cutoff:]
    if not valset:
        raise InputError("Validation set must have at least 1 example.")
    return train, list(valset)


def params_key(params: Mapping[str, int]) -> str:
    return ",".join(f"{name}={value}" for name, value in sorted(params.items()))


def json_state(state: Any) -> Any:
    """A random generator's state as JSON (tuples and numpy arrays as lists)."""
    if isinstance(state, tuple | list):
        return [json_state(part) for part in state]
    if hasattr(state, "tolist"):
        return state.tolist()
    return state


def python_state(state: Any) -> Any:
    """``random.Random.setstate``'s tuple from :func:`_json_state`'s lists."""
    return tuple(python_state(part) for part in state) if isinstance(state, list) else state


class MiproState(BaseModel):
    """The search: its space (from steps 1 and 2), the trials so far and the generators'
    states. ``val_indices`` are the searched valset's positions in the split valset."""

    prepared: bool = False
    instructions: dict[int, list[str]] = Field(default_factory=dict)
    demos: dict[int, list[list[dict[str, Any]]]] | None = None
    val_indices: list[int] = Field(default_factory=list)
    num_trials: int = 0
    minibatch: bool = True
    minibatch_size: int = 35
    full_eval_steps: int = 5
    rng: list[Any] | None = None
    sampler: list[Any] | None = None
    asked: int = 0
    full_pending: bool = False
    fully_scored: list[str] = Field(default_factory=list)
    results: list[TrialResult] = Field(default_factory=list)
    trial_logs: dict[int, dict[str, Any]] = Field(default_factory=dict)
    best_score: float = 0.0
    best_params: TrialParams = Field(default_factory=dict)
    best_number: int | None = None
    total_eval_calls: int = 0

    def adjusted(self) -> int:
        """DSPy's count of trials including full evaluations (the last comes before it)."""
        steps = self.full_eval_steps
        count = self.num_trials + self.num_trials // steps + 1
        return count + 1 if self.num_trials % steps else count

    def total(self) -> int:
        """How many trials the search scores: the default, ``num_trials``, the full ones."""
        number, full = 1, 0
        for _ in range(self.num_trials):
            number += 1
            if self.minibatch and self._full_after(number):
                number, full = number + 1, full + 1
        return 1 + self.num_trials + full

    def _full_after(self, number: int) -> bool:
        return number % (self.full_eval_steps + 1) == 0 or number == self.adjusted() - 1

    def demo_sets(self) -> DemoCandidates | None:
        if self.demos is None:
            return None
        return {i: [[Example(**d) for d in s] for s in sets] for i, sets in self.demos.items()}

    def program(self, student: Module, params: Mapping[str, int]) -> Module:
        return program_for(student, params, self.instructions, self.demo_sets())

    def distributions(self) -> dict[str, Any]:
        """optuna's search space: one categorical index per predictor and kind."""
        from optuna.distributions import CategoricalDistribution

        found: dict[str, Any] = {}
        for i, options in self.instructions.items():
            found[f"{i}_predictor_instruction"] = CategoricalDistribution(list(range(len(options))))
            if self.demos:
                found[f"{i}_predictor_demos"] = CategoricalDistribution(
                    list(range(len(self.demos[i])))
                )
        return found


def demo_json(demo_sets: DemoCandidates) -> dict[int, list[list[dict[str, Any]]]]:
    """Demo sets as JSON (the search state keeps them so)."""

    def one(demo: Any) -> dict[str, Any]:
        items = demo.items(include_dspy=True) if isinstance(demo, Example) else dict(demo).items()
        return dict(json.loads(json.dumps(dict(items), default=str)))

    return {int(i): [[one(d) for d in s] for s in sets] for i, sets in demo_sets.items()}
