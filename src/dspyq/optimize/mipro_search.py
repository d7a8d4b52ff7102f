"""MIPROv2's step 3: search (instruction, demo set) combinations with optuna's TPE sampler.

As in DSPy 3.4.1: the unchanged program is scored on the whole valset and given to the
study as its first trial; then each of ``num_trials`` trials scores the sampled
combination on a random minibatch of the valset, and after every
``minibatch_full_eval_steps`` trials (and once before the end) the combination with the
best average minibatch score that is not yet fully scored is scored on the whole valset
and told to the study too. The best full score wins; without minibatches every trial is
a full evaluation.

Each trial depends on the scores before it, so the search is a round strategy of one
trial per round (:class:`MiproRounds`, steps 1 and 2 being its preparation). Its state
(:class:`MiproState`) is JSON: the trials so far, and the states of the sampler's and the
minibatches' random generators, so the study rebuilt from it asks what the study of one
uninterrupted search would have asked, whether the rounds run in-process or on the queue.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.optimize.evaluate import CandidateScore, Evaluate
from dspyq.optimize.instructions import ProgramRecord
from dspyq.optimize.local_executor import run_rounds
from dspyq.optimize.mipro_state import (
    DemoCandidates,
    MiproState,
    TrialParams,
    TrialResult,
    create_minibatch,
    demo_json,
    json_state,
    minibatch_indices,
    params_key,
    program_for,
    python_state,
    split_valset,
)
from dspyq.optimize.strategy import Bench, Candidate, Folded, Outcome, RoundStrategy

__all__ = [
    "DemoCandidates",
    "MiproState",
    "PromptSearch",
    "TrialParams",
    "TrialResult",
    "candidate_programs",
    "create_minibatch",
    "demo_json",
    "json_state",
    "minibatch_indices",
    "program_for",
    "score_params",
    "split_valset",
]

logger = logging.getLogger(__name__)


def score_params(evaluate: Evaluate, program: Module, devset: Sequence[Example]) -> CandidateScore:
    """Score one combination's program on ``devset``; a failed evaluation scores 0.0, as
    in DSPy."""
    try:
        result = evaluate(program, devset=devset)
    except Exception:
        logger.error("An exception occurred during evaluation", exc_info=True)
        return CandidateScore(score=0.0, subscores=[])
    return CandidateScore(score=float(result.score), subscores=[r[2] for r in result.results])


class _Plan(BaseModel):
    """The next trial, and the generators' states once it is drawn."""

    candidate: Candidate
    kind: str  # "default", "minibatch" or "full"
    batch_size: int
    positions: list[int] | None = None
    rng: list[Any] | None = None
    sampler: list[Any] | None = None


def _sampler(seed: int, state: list[Any] | None) -> Any:
    """DSPy's seeded multivariate TPE sampler, its generators as ``state`` left them."""
    import numpy as np
    import optuna

    with warnings.catch_warnings():  # multivariate TPE is "experimental"; DSPy uses it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if state is not None:
        for rng, saved in zip(_sampler_rngs(sampler), state, strict=True):
            name, keys, pos, has_gauss, gauss = saved
            rng.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    return sampler


def _sampler_rngs(sampler: Any) -> list[Any]:
    # The sampler's own generator and its random sampler's (startup trials).
    return [sampler._rng.rng, sampler._random_sampler._rng.rng]


class MiproRounds(RoundStrategy[MiproState]):
    """MIPROv2's search as rounds of one trial each (see the module docstring);
    ``prepare`` is its steps 1 and 2 (``optimizer.prepare_search``)."""

    state_type = MiproState

    def __init__(
        self,
        optimizer: Any,
        seed: int,
        options: Mapping[str, Any] | None = None,
        prepared: MiproState | None = None,
        log_dir: str | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.seed = seed
        self.options = dict(options or {})
        self.prepared = prepared
        self.log_dir = log_dir
        self.optimizer_name = type(optimizer).__name__ if optimizer is not None else "MIPROv2"
        self._student: Module | None = None

    def start(self, bench: Bench) -> MiproState:
        self._student = bench.student
        return self.prepared.model_copy(deep=True) if self.prepared else MiproState()

    def needs_preparation(self, state: MiproState) -> bool:
        return not state.prepared

    def prepare(self, state: MiproState, bench: Bench) -> MiproState:
        prepared: MiproState = self.optimizer.prepare_search(bench, self.seed, self.options)
        return prepared

    def _plan(self, state: MiproState) -> _Plan | None:
        """The next trial (None: the search is over); a pure function of ``state``."""
        space = state.distributions()
        number = len(state.results) + 1
        size = len(state.val_indices)
        if not state.results:
            params: TrialParams = dict.fromkeys(space, 0)
            return _Plan(candidate=self._candidate(number, params, state, None), kind="default",
                         batch_size=size)  # fmt: skip
        if state.full_pending:
            params = self._full_evaluation_params(state)
            return _Plan(candidate=self._candidate(number, params, state, None), kind="full",
                         batch_size=size)  # fmt: skip
        if state.asked >= state.num_trials:
            return None
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = _sampler(self.seed, state.sampler)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for result in state.results:
            study.add_trial(
                optuna.trial.create_trial(
                    params=result.params, distributions=space, value=result.score
                )
            )
        trial = study.ask()
        params = {
            name: int(trial.suggest_categorical(name, dist.choices)) for name, dist in space.items()
        }
        rng = random.Random()
        if state.rng is not None:
            rng.setstate(python_state(state.rng))
        batch = state.minibatch_size if state.minibatch else size
        positions = minibatch_indices(size, batch, rng) if batch < size else None
        return _Plan(
            candidate=self._candidate(number, params, state, positions),
            kind="minibatch",
            batch_size=batch,
            positions=positions,
            rng=json_state(rng.getstate()),
            sampler=[json_state(r.get_state()) for r in _sampler_rngs(sampler)],
        )

    @staticmethod
    def _candidate(
        number: int, params: TrialParams, state: MiproState, positions: list[int] | None
    ) -> Candidate:
        chosen = state.val_indices
        indices = chosen if positions is None else [chosen[i] for i in positions]
        return Candidate(
            iteration=number,
            seed=number,
            proposal={"params": params},
            indices=indices,
            full_eval=positions is None,
        )

    @staticmethod
    def _full_evaluation_params(state: MiproState) -> TrialParams:
        """The best-averaging minibatch combination not yet fully scored (when all are,
        the lowest-averaging one, as DSPy does)."""
        scores: dict[str, list[float]] = {}
        params_of: dict[str, TrialParams] = {}
        for result in state.results:
            if not result.full_eval:
                scores.setdefault(params_key(result.params), []).append(result.score)
                params_of[params_key(result.params)] = result.params
        ranked = sorted(scores, key=lambda k: sum(scores[k]) / len(scores[k]), reverse=True)
        pending = [key for key in ranked if key not in state.fully_scored]
        return params_of[pending[0] if pending else ranked[-1]]

    def next_round(self, state: MiproState, width: int) -> list[Candidate]:
        planned = self._plan(state)
        return [] if planned is None else [planned.candidate]

    def build(self, candidate: Candidate, bench: Bench, state: MiproState) -> Module:
        return state.program(bench.student, (candidate.proposal or {})["params"])

    def devset(self, candidate: Candidate, bench: Bench, state: MiproState) -> list[Example]:
        _, val = split_valset(bench.trainset, bench.valset)
        return [val[i] for i in candidate.indices or []]

    def fold(self, state: MiproState, outcomes: list[Outcome]) -> list[Folded]:
        planned = self._plan(state)
        found = [
            o for o in outcomes if planned is not None and o.iteration == len(state.results) + 1
        ]
        if planned is None or not found:
            return []  # merged already
        outcome = found[0]
        score = 0.0 if outcome.score is None else outcome.score  # DSPy: a failure scores 0
        params = (planned.candidate.proposal or {})["params"]
        number = planned.candidate.iteration
        if planned.kind == "minibatch":
            state.asked += 1
            state.rng, state.sampler = planned.rng, planned.sampler
            state.full_pending = state.minibatch and state._full_after(number)
        elif planned.kind == "full":
            state.fully_scored.append(params_key(params))
            state.full_pending = False
        return [Folded(outcome, self._record(state, number, params, score, planned))]

    def _record(
        self, state: MiproState, number: int, params: TrialParams, score: float, planned: _Plan
    ) -> dict[str, Any]:
        full_eval = planned.batch_size >= len(state.val_indices)
        result = TrialResult(
            number=number,
            params=dict(params),
            score=score,
            batch_size=planned.batch_size,
            full_eval=full_eval,
            example_indices=planned.positions,
        )
        state.results.append(result)
        state.total_eval_calls += planned.batch_size
        kind = "full_eval" if full_eval else "mb"
        state.trial_logs[number] = {
            f"{kind}_score": score,
            f"{kind}_params": dict(params),
            "total_eval_calls_so_far": state.total_eval_calls,
        }
        if planned.positions is not None:
            state.trial_logs[number]["mb_example_indices"] = list(planned.positions)
        self._save(state, number, params, kind)
        if full_eval and (state.best_number is None or score > state.best_score):
            if state.best_number is not None:
                logger.info("New best full score: %s with %s", score, params)
            state.best_score, state.best_params = score, dict(params)
            state.best_number = number
        return {
            "optimizer": self.optimizer_name,
            "iteration": number,
            "params": dict(params),
            "evaluation_score": score,
            "full_eval": full_eval,
            "best_score": state.best_score,
        }

    def _save(self, state: MiproState, number: int, params: TrialParams, kind: str) -> None:
        if self.log_dir is None or self._student is None:
            return
        folder = Path(self.log_dir) / "evaluated_programs"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "_full_eval" if kind == "full_eval" else ""
        path = folder / f"program_{number}{suffix}.json"
        state.program(self._student, params).save(path)
        state.trial_logs[number][f"{kind}_program_path"] = str(path)

    def best(self, state: MiproState) -> int | None:
        return state.best_number

    def stop_reason(self, state: MiproState) -> str:
        return "every trial evaluated"


def candidate_programs(state: MiproState, student: Module, full_eval: bool) -> list[ProgramRecord]:
    """The scored programs, best first: the full evaluations or the minibatch ones."""
    ranked = sorted(state.results, key=lambda r: r.score, reverse=True)
    return [
        ProgramRecord(
            score=r.score,
            program=state.program(student, r.params),
            full_eval=r.full_eval,
            params=dict(r.params),
        )
        for r in ranked
        if r.full_eval == full_eval
    ]


class PromptSearch:
    """Step 3 alone, in-process, over given candidates (``rng`` draws the minibatches,
    ``seed`` seeds the sampler); the results are this object's attributes."""

    def __init__(
        self,
        program: Module,
        instruction_candidates: Mapping[int, list[str]],
        demo_candidates: DemoCandidates | None,
        evaluate: Evaluate,
        valset: Sequence[Example],
        *,
        seed: int,
        rng: random.Random,
        log_dir: str | None = None,
        optimizer_name: str = "MIPROv2",
    ) -> None:
        self.program = program
        self.evaluate = evaluate
        self.valset = list(valset)
        self.seed = seed
        self.log_dir = log_dir
        self.optimizer_name = optimizer_name
        self.space = MiproState(
            prepared=True,
            instructions={int(i): list(texts) for i, texts in instruction_candidates.items()},
            demos=None if demo_candidates is None else demo_json(demo_candidates),
            val_indices=list(range(len(self.valset))),
            rng=json_state(rng.getstate()),
        )
        self.state = self.space

    def run(
        self,
        num_trials: int,
        minibatch: bool = True,
        minibatch_size: int = 35,
        minibatch_full_eval_steps: int = 5,
    ) -> TrialParams:
        """Run the search; returns the best params (also in :attr:`best_params`)."""
        space = self.space.model_copy(
            update={
                "num_trials": num_trials,
                "minibatch": minibatch,
                "minibatch_size": minibatch_size,
                "full_eval_steps": max(1, minibatch_full_eval_steps),
            }
        )
        rounds = MiproRounds(None, self.seed, prepared=space, log_dir=self.log_dir)
        rounds.optimizer_name = self.optimizer_name
        bench = Bench(self.program, self.valset, self.valset)
        run = run_rounds(
            rounds,
            bench,
            score=lambda program, devset: score_params(self.evaluate, program, devset),
        )
        self.state = run.state
        logger.info("Best full score %s with %s", self.best_score, self.best_params)
        return self.best_params

    @property
    def results(self) -> list[TrialResult]:
        return self.state.results

    @property
    def trial_logs(self) -> dict[int, dict[str, Any]]:
        return self.state.trial_logs

    @property
    def best_score(self) -> float:
        return self.state.best_score

    @property
    def best_params(self) -> TrialParams:
        return self.state.best_params

    @property
    def total_eval_calls(self) -> int:
        return self.state.total_eval_calls

    def program_for(self, params: Mapping[str, int]) -> Module:
        return self.state.program(self.program, params)

    def candidate_programs(self, full_eval: bool) -> list[ProgramRecord]:
        return candidate_programs(self.state, self.program, full_eval)
