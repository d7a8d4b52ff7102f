"""What an optimization run is made of, as JSON: its plan, candidates and checkpoint.

An optimizer crosses the queue as its class name and constructor settings (its metric
as an import path; see :mod:`dspyq.tasks.optimizer_settings`); the worker rebuilds it
and builds one candidate program per seed (few-shot optimizers) or per proposed
instruction (COPRO, one round per depth). An optimizer without a round strategy runs
its whole ``compile`` as the run's one candidate (one task, no checkpoint inside). The
coordinator fans a round out as tasks and checkpoints after it, so a restarted
coordinator resumes at the next round. A candidate is scored in parts (slices of its
devset, one task each) when the round has too few candidates to keep the pool busy;
:func:`combine_parts` joins them into one outcome. Nothing here imports Celery.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.errors import InputError
from dspyq.lm.lm import LM
from dspyq.optimize.bootstrap import BootstrapFewShot
from dspyq.optimize.copro import COPRO, CoproRounds
from dspyq.optimize.labeled import LabeledFewShot
from dspyq.optimize.mipro_search import MiproState
from dspyq.optimize.random_search import (
    ZERO_SHOT_SEED,
    BootstrapFewShotWithRandomSearch,
    RandomSearchRounds,
)
from dspyq.optimize.registry import optimizer_name
from dspyq.optimize.strategy import OneCandidateRounds, RoundStrategy, WholeCompileRounds
from dspyq.optimize.teleprompter import Teleprompter
from dspyq.tasks.mipro_run import MIPRO, mipro_config, mipro_rounds
from dspyq.tasks.optimizer_settings import TAG, LMFactory, capture, rebuild
from dspyq.tasks.protocol import DEFAULT_CANDIDATES_PER_ROUND

RANDOM_SEARCH = "BootstrapFewShotWithRandomSearch"
INSTRUCTION_SEARCH = "COPRO"
SINGLE_BOOTSTRAP = "BootstrapFewShot"
SINGLE_ROUND = ("LabeledFewShot", SINGLE_BOOTSTRAP)
SUPPORTED_OPTIMIZERS = (*SINGLE_ROUND, RANDOM_SEARCH, INSTRUCTION_SEARCH, MIPRO)
DEFAULT_ROUND_TASKS = 12
"""How many scoring tasks a round aims at: a round of fewer candidates scores each in
parts, so one candidate (BootstrapFewShot) spreads over the pool's workers too."""


RUN_ROLES = ("teacher_settings", "prompt_model", "task_model")
"""Constructor parameters a round-strategy run fills from its plan (``lm``,
``teacher_lm``) rather than from the optimizer it was given."""


def has_round_strategy(name: str) -> bool:
    """Whether the optimizer a run names runs as rounds of tasks (else: one compile task)."""
    return name in SUPPORTED_OPTIMIZERS


def optimizer_config(
    optimizer: Teleprompter, compile_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The constructor settings that rebuild ``optimizer`` on a worker (metric aside);
    MIPROv2's also hold its ``compile`` options (``num_trials``, ``minibatch_size``, ...).

    Raises InputError for an optimizer runs cannot carry.
    """
    name = optimizer_name(type(optimizer))
    if name == MIPRO:
        return mipro_config(optimizer, compile_options or {})  # type: ignore[arg-type]
    if not has_round_strategy(name):
        settings = capture(optimizer)
        check_compile_options(optimizer, compile_options or {})
        return settings
    if compile_options:
        raise InputError(
            f"compile options are for MIPROv2 runs; {name} takes its settings in its constructor",
            context={"optimizer": name, "compile_options": sorted(compile_options)},
        )
    return {k: v for k, v in capture(optimizer).items() if k not in RUN_ROLES}


def check_compile_options(optimizer: Teleprompter, options: dict[str, Any]) -> None:
    """Refuse compile options ``optimizer.compile`` would refuse, or that are not JSON."""
    name = type(optimizer).__name__
    try:
        json.dumps(options)
        if getattr(optimizer, "_compile", None) is not None:
            optimizer._refuse_options(options)
        else:  # an optimizer with a compile of its own
            inspect.signature(type(optimizer).compile).bind_partial(optimizer, **options)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{name} cannot take these compile options on the queue: {exc}",
            context={"optimizer": name, "compile_options": sorted(options)},
        ) from None


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
    # False when the client gave no valset (MIPROv2 then splits the trainset, as DSPy does).
    valset_given: bool = True
    round_tasks: int = DEFAULT_ROUND_TASKS
    # An optimizer without a round strategy: the options its one compile task passes.
    compile_options: dict[str, Any] = Field(default_factory=dict)

    def parts_per_candidate(self, candidates: int, examples: int | None = None) -> int:
        """In how many tasks each of a round's ``candidates`` is scored: enough for about
        ``round_tasks`` tasks in the round, none with fewer examples than the run has
        threads (a smaller part would leave threads idle for its task's overhead).
        ``examples``: the size of their devset (default: the valset's)."""
        if examples is None:
            devset = self.valset if self.valset_given and self.valset else self.trainset
            examples = len(devset)
        by_round = math.ceil(self.round_tasks / max(1, candidates))
        by_size = examples // max(1, self.num_threads)
        return max(1, min(by_round, by_size))

    def bootstrap_windows(self, start: int) -> list[tuple[int, int]]:
        """A BootstrapFewShot run's next wave of bootstrapping from trainset index
        ``start``: ``round_tasks`` windows of ``num_threads`` examples, a task each (the
        examples past the walk's last demo are run for nothing, the price of the wave)."""
        size = max(1, self.num_threads)
        stops = range(start, min(len(self.trainset), start + self.round_tasks * size), size)
        return [(a, min(a + size, len(self.trainset))) for a in stops]

    def total(self, checkpoint: RunCheckpoint | None = None) -> int:
        """How many candidates the run evaluates if it is not stopped (MIPROv2: known once
        its search is prepared, 0 before)."""
        if self.optimizer == MIPRO:
            state = None if checkpoint is None else checkpoint.state
            search = MiproState.model_validate(state or {})
            return search.total() if search.prepared else 0
        if self.optimizer == INSTRUCTION_SEARCH:
            return int(self.settings["depth"]) * int(self.settings["breadth"])
        if self.optimizer == RANDOM_SEARCH:
            return int(self.settings["num_candidate_programs"]) - ZERO_SHOT_SEED
        return 1


class CandidateOutcome(BaseModel):
    """One evaluated candidate: its score and program, or why it has none."""

    iteration: int
    seed: int
    round: int
    task_id: str = ""
    score: float | None = None
    program: dict[str, Any] | None = None
    instruction: str | None = None
    prefix: str | None = None
    error: dict[str, Any] | None = None
    # MIPROv2 trials: the combination scored and whether on the whole valset (only full
    # evaluations carry their program: they alone compete for the best).
    params: dict[str, int] | None = None
    full_eval: bool = True
    # A candidate scored in parts: this part's place, and its metric total and size.
    part: int = 0
    parts: int = 1
    score_sum: float | None = None
    examples: int = 0


def part_of(devset: Sequence[Any], part: int, parts: int) -> list[Any]:
    """The examples of ``part`` (0-based) when ``devset`` is cut in ``parts`` contiguous,
    near-equal slices (empty when there are more parts than examples)."""
    size, extra = divmod(len(devset), parts)
    start = part * size + min(part, extra)
    return list(devset[start : start + size + (1 if part < extra else 0)])


def combine_parts(outcomes: Sequence[CandidateOutcome]) -> list[CandidateOutcome]:
    """One outcome per candidate from its parts: the score over all its examples (as
    ``Evaluate`` computes it over the whole devset), or the first part's error (a
    candidate missing part of its examples has no score)."""
    by_iteration: dict[int, list[CandidateOutcome]] = {}
    for outcome in outcomes:
        by_iteration.setdefault(outcome.iteration, []).append(outcome)
    combined: list[CandidateOutcome] = []
    for iteration in sorted(by_iteration):
        parts = sorted(by_iteration[iteration], key=lambda o: o.part)
        first = parts[0]
        if len(parts) == 1 and first.parts == 1:
            combined.append(first)
            continue
        whole = first.model_copy(update={"part": 0, "parts": 1})
        failed = [o for o in parts if o.error is not None]
        if failed:
            whole.error, whole.score, whole.program = failed[0].error, None, None
        elif {o.part for o in parts} != set(range(first.parts)):
            missing = sorted(set(range(first.parts)) - {o.part for o in parts})
            whole.error = {"type": "StateError", "message": f"parts {missing} never scored"}
            whole.score, whole.program = None, None
        else:
            total = sum(o.score_sum or 0.0 for o in parts)
            size = sum(o.examples for o in parts)
            whole.score = round(100 * total / size, 2) if size else 0.0
            whole.score_sum, whole.examples = total, size
        combined.append(whole)
    return combined


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
    fanned_out: int = -1
    # BootstrapFewShot: the teacher's outcomes by trainset index, and the next wave's start.
    bootstrap: dict[str, Any] | None = None
    # The optimizer's round strategy's state (see dspyq.optimize.strategy).
    state: dict[str, Any] | None = None


def strategy_for(
    plan: RunPlan,
    metric: Callable[..., Any] | None = None,
    teacher_lm: LM | None = None,
    prompt_lm: LM | None = None,
    task_lm: LM | None = None,
    make_lm: LMFactory | None = None,
    allowed: Sequence[str] | None = None,
) -> RoundStrategy[Any]:
    """The run's optimizer as its round strategy, built as ``compile`` builds it
    (``metric`` and the models may be left out where only planning and folding happen:
    the coordinator). An optimizer without a round strategy of its own is rebuilt from
    its settings (its LMs by ``make_lm``, imports within ``allowed``) when ``make_lm``
    is given, to run its whole ``compile`` as the run's one candidate."""
    teacher_settings = {} if teacher_lm is None else {"lm": teacher_lm}
    settings = dict(plan.settings)
    scorer = metric or _no_metric
    if not has_round_strategy(plan.optimizer):
        if make_lm is None:  # planning and folding only
            return WholeCompileRounds(None)
        if plan.teacher_lm is not None and settings.get("teacher_settings") == {}:
            settings["teacher_settings"] = {
                "lm": {TAG: "lm", "model": plan.teacher_lm, "kwargs": {}}
            }
        optimizer = rebuild(
            plan.optimizer, settings, metric=metric, make_lm=make_lm, allowed=allowed
        )
        return WholeCompileRounds(optimizer, plan.compile_options)
    if plan.optimizer == MIPRO:
        return mipro_rounds(settings, scorer, prompt_lm, task_lm, teacher_lm)
    if plan.optimizer == RANDOM_SEARCH:
        search = BootstrapFewShotWithRandomSearch(
            metric=scorer, teacher_settings=teacher_settings, **settings
        )
        return RandomSearchRounds(search, metric_name=plan.metric)
    if plan.optimizer == INSTRUCTION_SEARCH:
        return CoproRounds(COPRO(prompt_model=prompt_lm, metric=scorer, **settings))
    if plan.optimizer == SINGLE_BOOTSTRAP:
        # A run bootstraps its examples in windows of its threads (same demos, sooner).
        if settings.get("num_threads") is None:
            settings["num_threads"] = plan.num_threads
        return OneCandidateRounds(
            BootstrapFewShot(metric=metric, teacher_settings=teacher_settings, **settings)
        )
    if plan.optimizer == "LabeledFewShot":
        return OneCandidateRounds(LabeledFewShot(**settings))
    raise InputError(f"unsupported optimizer {plan.optimizer!r}")


def _no_metric(*_: Any) -> bool:
    return False


def first_instruction(program: Module) -> str | None:
    """The instructions of the program's first predictor, if it has one."""
    for predictor in program.predictors():
        signature = getattr(predictor, "signature", None)
        return None if signature is None else str(signature.instructions)
    return None


def only_predictor_name(program: Module) -> str:
    """The name of the program's one predictor; InputError when it has another number.

    Runs tune one predictor's instruction per COPRO run for now.
    """
    names = [name for name, _ in program.named_predictors()]
    if len(names) != 1:
        raise InputError(
            f"COPRO runs on the queue tune programs with exactly one predictor; "
            f"{type(program).__name__} has {len(names)}",
            context={"predictors": names},
        )
    return names[0]
