"""MIPROv2 as an optimization run: what its coordinator keeps and decides, as JSON.

A run prepares once (a task on the LM's pool bootstraps the demo sets and asks the
prompt model for instruction proposals, exactly as the in-process ``MIPROv2.compile``
does) and then searches in rounds: each round is a batch of trials, each scoring one
(instruction, demo set) combination per predictor on a minibatch of the valset, or on
all of it. The coordinator never keeps an optuna study between rounds: it rebuilds one
from the trials in the checkpoint (seeded by the round, ``constant_liar`` so a batch
asked at once spreads out) and asks it for the next batch, so a restarted coordinator
asks exactly what the dead one would have. Full evaluations follow DSPy's rule: after
every ``minibatch_full_eval_steps`` minibatch trials (and once at the end) the
combination with the best average minibatch score not yet fully scored is scored on
the whole valset; only full scores compete for the best program.

Nothing here imports Celery.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.errors import ConfigurationError, InputError
from dspyq.lm.lm import LM
from dspyq.optimize.mipro import MIPROv2
from dspyq.optimize.mipro_search import TrialParams, minibatch_indices, program_for

MIPRO = "MIPROv2"

COMPILE_OPTIONS: dict[str, Any] = {
    "num_trials": None,
    "minibatch": True,
    "minibatch_size": 35,
    "minibatch_full_eval_steps": 5,
    "program_aware_proposer": True,
    "data_aware_proposer": True,
    "view_data_batch_size": 10,
    "tip_aware_proposer": True,
    "fewshot_aware_proposer": True,
}
"""``MIPROv2.compile`` options a run accepts (``compile_options=``), with DSPy's defaults."""


def mipro_config(optimizer: MIPROv2, compile_options: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor settings and compile options that rebuild ``optimizer``'s search."""
    unknown = sorted(set(compile_options) - set(COMPILE_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"MIPROv2 runs do not take compile option(s) {', '.join(unknown)}; "
            f"known: {', '.join(COMPILE_OPTIONS)}",
            context={"unknown": unknown},
        )
    return {
        "auto": optimizer.auto,
        "num_candidates": optimizer.num_candidates,
        "max_bootstrapped_demos": optimizer.max_bootstrapped_demos,
        "max_labeled_demos": optimizer.max_labeled_demos,
        "max_errors": optimizer.max_errors,
        "seed": optimizer.seed,
        "init_temperature": optimizer.init_temperature,
        "metric_threshold": optimizer.metric_threshold,
        **COMPILE_OPTIONS,
        **dict(compile_options),
    }


def check_mipro_run(settings: Mapping[str, Any], student: Module) -> None:
    """Refuse at submit time (InputError) what ``MIPROv2.compile`` would refuse (auto vs.
    num_trials)."""
    optimizer = _optimizer(settings, metric=_no_metric, prompt_lm=None, task_lm=None)
    zeroshot = optimizer.max_bootstrapped_demos == 0 and optimizer.max_labeled_demos == 0
    try:
        optimizer._check_run_mode(student, settings.get("num_trials"), zeroshot)
    except ConfigurationError as exc:
        raise InputError(exc.message, context=dict(exc.context)) from None


def _no_metric(*_: Any) -> bool:
    return False


def _optimizer(
    settings: Mapping[str, Any],
    metric: Callable[..., Any],
    prompt_lm: LM | None,
    task_lm: LM | None,
    teacher_lm: LM | None = None,
) -> MIPROv2:
    placeholder = object()  # the constructor wants models; submit-time checks have none
    return MIPROv2(
        metric=metric,
        prompt_model=prompt_lm or placeholder,
        task_model=task_lm or placeholder,
        teacher_settings={} if teacher_lm is None else {"lm": teacher_lm},
        max_bootstrapped_demos=settings["max_bootstrapped_demos"],
        max_labeled_demos=settings["max_labeled_demos"],
        auto=settings["auto"],
        num_candidates=settings["num_candidates"],
        max_errors=settings["max_errors"],
        seed=settings["seed"],
        init_temperature=settings["init_temperature"],
        metric_threshold=settings["metric_threshold"],
    )


class TrialJob(BaseModel):
    """One trial sent to the pool: its number, the combination, and the minibatch."""

    number: int
    params: TrialParams
    indices: list[int] | None = None
    """Positions in the search's valset (None: all of it, a full evaluation)."""


class TrialDone(BaseModel):
    """A scored trial as the checkpoint keeps it."""

    number: int
    params: TrialParams
    score: float | None
    full_eval: bool


class SearchState(BaseModel):
    """Everything the search needs between rounds (kept in the run's checkpoint)."""

    instructions: dict[str, list[str]]
    demos: dict[str, list[list[dict[str, Any]]]] | None
    val_indices: list[int]
    num_trials: int
    minibatch: bool
    minibatch_size: int
    full_eval_steps: int
    dispatched: int = 0
    asked: int = 0
    full_evals: int = 0
    trials: list[TrialDone] = Field(default_factory=list)

    def total(self) -> int:
        """Trials the search runs: the default, ``num_trials``, and the full evaluations."""
        if not self.minibatch:
            return 1 + self.num_trials
        return 1 + self.num_trials + math.ceil(self.num_trials / self.full_eval_steps)

    def distributions(self) -> dict[str, Any]:
        """optuna's search space, named as DSPy names it."""
        from optuna.distributions import CategoricalDistribution

        space: dict[str, Any] = {}
        for i, options in self.instructions.items():
            space[f"{i}_predictor_instruction"] = CategoricalDistribution(list(range(len(options))))
            if self.demos:
                space[f"{i}_predictor_demos"] = CategoricalDistribution(
                    list(range(len(self.demos[i])))
                )
        return space

    def program(self, student: Module, params: Mapping[str, int]) -> Module:
        """``student`` with the combination ``params`` applied (a copy)."""
        instructions = {int(i): texts for i, texts in self.instructions.items()}
        demos = (
            None
            if self.demos is None
            else {
                int(i): [[Example(**demo) for demo in demo_set] for demo_set in sets]
                for i, sets in self.demos.items()
            }
        )
        return program_for(student, params, instructions, demos)


def _demo_json(demo: Any) -> dict[str, Any]:
    items = demo.items(include_dspy=True) if isinstance(demo, Example) else dict(demo).items()
    return dict(json.loads(json.dumps(dict(items), default=str)))


def prepare_search(
    settings: Mapping[str, Any],
    student: Module,
    metric: Callable[..., Any],
    trainset: Sequence[Example],
    valset: Sequence[Example] | None,
    *,
    task_lm: LM,
    prompt_lm: LM,
    teacher_lm: LM | None,
) -> SearchState:
    """MIPROv2's steps 1 and 2 (demo sets, instruction proposals), as ``compile`` runs them.

    Calls the task model (bootstrapping) and the prompt model (proposals).
    """
    optimizer = _optimizer(settings, metric, prompt_lm, task_lm, teacher_lm)
    zeroshot = optimizer.max_bootstrapped_demos == 0 and optimizer.max_labeled_demos == 0
    num_trials = settings.get("num_trials")
    optimizer._check_run_mode(student, num_trials, zeroshot)
    seed = int(settings["seed"])
    optimizer.rng = random.Random(seed)
    train, val = optimizer._split(trainset, valset)
    positions = {id(example): i for i, example in enumerate(val)}
    trials, chosen, minibatch = optimizer._run_mode_settings(
        student, num_trials, bool(settings["minibatch"]), zeroshot, val
    )
    size = int(settings["minibatch_size"])
    if minibatch and size > len(chosen):
        raise ConfigurationError(
            f"Minibatch size cannot exceed the size of the valset. Valset size: {len(chosen)}."
        )
    program = student.deepcopy()
    with context(lm=task_lm):
        demo_sets = optimizer.create_demo_candidates(program, train, seed)
    instructions = optimizer.propose_instructions(
        program,
        train,
        demo_sets,
        view_data_batch_size=int(settings["view_data_batch_size"]),
        program_aware=bool(settings["program_aware_proposer"]),
        data_aware=bool(settings["data_aware_proposer"]),
        tip_aware=bool(settings["tip_aware_proposer"]),
        fewshot_aware=bool(settings["fewshot_aware_proposer"]),
    )
    return SearchState(
        instructions={str(i): [str(t) for t in texts] for i, texts in instructions.items()},
        demos=None
        if zeroshot
        else {
            str(i): [[_demo_json(d) for d in demo_set] for demo_set in sets]
            for i, sets in demo_sets.items()
        },
        val_indices=[positions[id(example)] for example in chosen],
        num_trials=int(trials),
        minibatch=minibatch,
        minibatch_size=size,
        full_eval_steps=max(1, int(settings["minibatch_full_eval_steps"])),
    )


def _key(params: Mapping[str, int]) -> str:
    return ",".join(f"{name}={value}" for name, value in sorted(params.items()))


def _full_evaluation_params(state: SearchState, already: set[str]) -> TrialParams | None:
    """The best-averaging minibatch combination not yet fully scored (DSPy: else the
    worst-averaging one)."""
    scores: dict[str, list[float]] = defaultdict(list)
    params_of: dict[str, TrialParams] = {}
    for trial in state.trials:
        if not trial.full_eval and trial.score is not None:
            scores[_key(trial.params)].append(trial.score)
            params_of[_key(trial.params)] = trial.params
    if not scores:
        return None
    ranked = sorted(scores, key=lambda k: sum(scores[k]) / len(scores[k]), reverse=True)
    pending = [key for key in ranked if key not in already]
    return params_of[pending[0] if pending else ranked[-1]]


def next_trials(state: SearchState, seed: int, round_index: int, width: int) -> list[TrialJob]:
    """The trials of the next round (none: the search is over); updates ``state``'s
    counters. Deterministic in (checkpoint, seed, round), so a redelivered step asks
    the same."""
    import optuna

    jobs: list[TrialJob] = []

    def add(params: TrialParams, indices: list[int] | None) -> None:
        state.dispatched += 1
        jobs.append(TrialJob(number=state.dispatched, params=params, indices=indices))

    space = state.distributions()
    if state.dispatched == 0:  # DSPy scores the unchanged program first, on everything
        add(dict.fromkeys(space, 0), None)
    minibatch_done = sum(1 for t in state.trials if not t.full_eval)
    if state.minibatch:
        all_done = state.asked >= state.num_trials and minibatch_done >= state.asked
        steps = state.full_eval_steps
        wanted = math.ceil(minibatch_done / steps) if all_done else minibatch_done // steps
        fully = {_key(t.params) for t in state.trials if t.full_eval and t.number > 1}
        while state.full_evals < wanted:
            params = _full_evaluation_params(state, fully)
            if params is None:
                break
            fully.add(_key(params))
            state.full_evals += 1
            add(params, None)
    remaining = state.num_trials - state.asked
    if remaining <= 0:
        return jobs
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # multivariate TPE and constant_liar are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=seed + round_index, multivariate=True, constant_liar=True
        )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for trial in state.trials:
        if trial.score is not None:
            study.add_trial(
                optuna.trial.create_trial(
                    params=trial.params, distributions=space, value=trial.score
                )
            )
    size = len(state.val_indices)
    for _ in range(min(remaining, max(1, width - len(jobs)))):
        asked = study.ask()
        params = {
            name: int(asked.suggest_categorical(name, dist.choices)) for name, dist in space.items()
        }
        state.asked += 1
        indices = None
        if state.minibatch and state.minibatch_size < size:
            rng = random.Random(f"{seed}:{state.dispatched + 1}")
            indices = sorted(minibatch_indices(size, state.minibatch_size, rng))
        add(params, indices)
    return jobs
