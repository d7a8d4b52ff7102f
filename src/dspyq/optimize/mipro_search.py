"""MIPROv2's step 3: search (instruction, demo set) combinations with optuna's TPE sampler.

As in DSPy 3.4.1: the unchanged program is scored on the whole valset and given to the
study as its first trial; then each of ``num_trials`` trials scores the sampled
combination on a random minibatch of the valset, and after every
``minibatch_full_eval_steps`` trials (and once before the end) the combination with the
best average minibatch score that is not yet fully scored is scored on the whole valset
and told to the study too. The best full score wins; without minibatches every trial is
a full evaluation.

A trial is JSON: :data:`TrialParams` and the minibatch's example positions in, a score
out (:func:`score_params`), recorded as a :class:`TrialResult`. The loop uses optuna's ask/tell interface, so a coordinator can
run the trials as tasks and checkpoint ``trial_logs`` after each.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.observe import emit
from dspyq.optimize.copro import ProgramRecord
from dspyq.optimize.evaluate import Evaluate

if TYPE_CHECKING:
    import optuna

__all__ = [
    "DemoCandidates",
    "PromptSearch",
    "TrialParams",
    "TrialResult",
    "create_minibatch",
    "minibatch_indices",
    "program_for",
    "score_params",
]

logger = logging.getLogger(__name__)

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


def score_params(
    program: Module,
    params: Mapping[str, int],
    instruction_candidates: Mapping[int, list[str]],
    demo_candidates: DemoCandidates | None,
    evaluate: Evaluate,
    devset: Sequence[Example],
) -> float:
    """Score one combination on ``devset``; a failed evaluation scores 0.0, as in DSPy."""
    candidate = program_for(program, params, instruction_candidates, demo_candidates)
    try:
        return float(evaluate(candidate, devset=devset).score)
    except Exception:
        logger.error("An exception occurred during evaluation", exc_info=True)
        return 0.0


def _params_key(params: Mapping[str, int]) -> str:
    return ",".join(f"{name}={value}" for name, value in sorted(params.items()))


class PromptSearch:
    """The search of one compile: the study, every trial's result, the best params.

    ``rng`` draws the minibatches (the optimizer's seeded rng); ``seed`` seeds the
    sampler. ``log_dir`` (optional) receives each scored program as JSON.
    """

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
        self.instructions = dict(instruction_candidates)
        self.demos = demo_candidates
        self.evaluate = evaluate
        self.valset = list(valset)
        self.seed = seed
        self.rng = rng
        self.log_dir = log_dir
        self.optimizer_name = optimizer_name
        self.results: list[TrialResult] = []
        self.trial_logs: dict[int, dict[str, Any]] = {}
        self.best_score = 0.0
        self.best_params: TrialParams = {}
        self.total_eval_calls = 0
        self._minibatch_scores: dict[str, list[float]] = defaultdict(list)
        self._params_of: dict[str, TrialParams] = {}
        self._fully_scored: set[str] = set()

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

    def program_for(self, params: Mapping[str, int]) -> Module:
        return program_for(self.program, params, self.instructions, self.demos)

    def score(self, params: Mapping[str, int], devset: Sequence[Example]) -> float:
        return score_params(
            self.program, params, self.instructions, self.demos, self.evaluate, devset
        )

    def run(
        self,
        num_trials: int,
        minibatch: bool = True,
        minibatch_size: int = 35,
        minibatch_full_eval_steps: int = 5,
    ) -> TrialParams:
        """Run the search; returns the best params (also in :attr:`best_params`)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # multivariate TPE is "experimental"; DSPy uses it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=self.seed, multivariate=True)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        distributions = self.distributions()

        default = dict.fromkeys(distributions, 0)
        default_score = self.score(default, self.valset)
        self.best_score, self.best_params = default_score, default
        self._record(1, default, default_score, len(self.valset))
        study.add_trial(
            optuna.trial.create_trial(
                params=default, distributions=distributions, value=default_score
            )
        )

        # DSPy's count of trials including full evaluations; the last one comes before it.
        adjusted = num_trials + num_trials // minibatch_full_eval_steps + 1
        if num_trials % minibatch_full_eval_steps:
            adjusted += 1
        for _ in range(num_trials):
            trial = study.ask()
            number = trial.number + 1
            params = {
                name: int(trial.suggest_categorical(name, dist.choices))
                for name, dist in distributions.items()
            }
            batch = minibatch_size if minibatch else len(self.valset)
            indices = (
                minibatch_indices(len(self.valset), batch, self.rng)
                if batch < len(self.valset)
                else None
            )
            devset = self.valset if indices is None else [self.valset[i] for i in indices]
            score = self.score(params, devset)
            self._record(number, params, score, batch, indices)
            key = _params_key(params)
            self._minibatch_scores[key].append(score)
            self._params_of[key] = params
            if minibatch and (
                number % (minibatch_full_eval_steps + 1) == 0 or number == adjusted - 1
            ):
                self._full_evaluation(study, number, distributions)
            study.tell(trial, score)
        logger.info("Best full score %s with %s", self.best_score, self.best_params)
        return self.best_params

    def _full_evaluation(
        self, study: optuna.Study, number: int, distributions: dict[str, Any]
    ) -> None:
        """Score on the whole valset the best-averaging combination not yet fully scored
        (when all are, the lowest-averaging one, as DSPy does)."""
        import optuna

        ranked = sorted(
            self._minibatch_scores,
            key=lambda k: sum(self._minibatch_scores[k]) / len(self._minibatch_scores[k]),
            reverse=True,
        )
        pending = [key for key in ranked if key not in self._fully_scored]
        key = pending[0] if pending else ranked[-1]
        params = self._params_of[key]
        score = self.score(params, self.valset)
        self._fully_scored.add(key)
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=score)
        )
        self._record(number + 1, params, score, len(self.valset))

    def _record(
        self,
        number: int,
        params: TrialParams,
        score: float,
        batch: int,
        indices: list[int] | None = None,
    ) -> None:
        result = TrialResult(
            number=number,
            params=dict(params),
            score=score,
            batch_size=batch,
            full_eval=batch >= len(self.valset),
            example_indices=indices,
        )
        self.results.append(result)
        self.total_eval_calls += batch
        kind = "full_eval" if result.full_eval else "mb"
        self.trial_logs[number] = {
            f"{kind}_score": score,
            f"{kind}_params": dict(params),
            "total_eval_calls_so_far": self.total_eval_calls,
        }
        if indices is not None:
            self.trial_logs[number]["mb_example_indices"] = list(indices)
        self._save(number, params, kind)
        if result.full_eval and score > self.best_score:
            self.best_score, self.best_params = score, dict(params)
            logger.info("New best full score: %s with %s", score, params)
        emit(
            "optimization_iteration",
            {
                "optimizer": self.optimizer_name,
                "iteration": number,
                "params": dict(params),
                "evaluation_score": score,
                "full_eval": result.full_eval,
                "best_score": self.best_score,
            },
        )

    def _save(self, number: int, params: TrialParams, kind: str) -> None:
        if self.log_dir is None:
            return
        folder = Path(self.log_dir) / "evaluated_programs"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "_full_eval" if kind == "full_eval" else ""
        path = folder / f"program_{number}{suffix}.json"
        self.program_for(params).save(path)
        self.trial_logs[number][f"{kind}_program_path"] = str(path)

    def candidate_programs(self, full_eval: bool) -> list[ProgramRecord]:
        """The scored programs, best first: the full evaluations or the minibatch ones."""
        ranked = sorted(self.results, key=lambda r: r.score, reverse=True)
        return [
            ProgramRecord(
                score=r.score,
                program=self.program_for(r.params),
                full_eval=r.full_eval,
                params=dict(r.params),
            )
            for r in ranked
            if r.full_eval == full_eval
        ]
