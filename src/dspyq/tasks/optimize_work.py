"""An optimization run's work on the provider pool: prepare, build and score candidates.

Each function is the body of one task the coordinator
(:mod:`dspyq.tasks.optimize_rounds`) sends to the pool of the run's LM. It rebuilds the
run's round strategy from the run's plan (with the metric and the models, this time)
and does what the strategy says: its preparation, one candidate's build, or the scoring
of one part of a candidate's devset. None of them raises: a chord must fire, so a
failure comes back as the result's ``error``.

A budget (``max_lm_calls``, ``budget_usd``) is checked before a candidate starts and,
within it, between chunks of examples: a candidate stopped part-way has no score. A
candidate's LM calls are held back and written a chunk (or the whole task) at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.exceptions import Ignore, Reject, Retry
from pydantic import BaseModel

from dspyq.core.context import context
from dspyq.core.program import program_to_spec
from dspyq.errors import DspyqError
from dspyq.lm.lm import LM
from dspyq.optimize.bootstrap import BootstrapFewShot
from dspyq.optimize.evaluate import CandidateScore
from dspyq.optimize.random_search import evaluate_candidate
from dspyq.optimize.strategy import Candidate
from dspyq.store.buffer import PendingRecords, active_records, pending_records
from dspyq.store.models import TERMINAL_RUN_STATUSES, OptimizationRunRecord
from dspyq.store.runs import RunStore
from dspyq.tasks.context import WorkerContext, worker_context
from dspyq.tasks.metrics import resolve_metric
from dspyq.tasks.optimization import (
    CandidateOutcome,
    RunCheckpoint,
    RunPlan,
    first_instruction,
    part_of,
    strategy_for,
)
from dspyq.tasks.optimize_rounds import bench_of, budget_reason, spent

logger = logging.getLogger(__name__)

BUDGET_CHUNK_MIN = 8
"""With a budget, a candidate scores its examples in chunks of at least this many (or
twice its threads) and checks the run's spend between chunks."""

ENDED = {"type": "JobCancelledError", "message": "the run has ended"}


class BudgetSpent(DspyqError):
    """The run's budget ran out while a candidate was being scored (its score is partial)."""


class CandidateJob(BaseModel):
    """What one candidate task does: which candidate, and which part of its work."""

    iteration: int
    seed: int = 0
    candidate: dict[str, Any] | None = None
    program: dict[str, Any] | None = None
    part: int = 0
    parts: int = 1
    build_only: bool = False


def error_of(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, DspyqError):
        return exc.to_dict()
    return {"type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}"}


def _write_held(environment: WorkerContext, held: PendingRecords) -> None:
    """Store a task's held-back LM records (events and rows) in one transaction."""
    events, rows = held.events, held.lm_requests
    environment.recorder.record(events, rows)
    held.discard(events, rows)


def _live_run(run_id: str) -> tuple[WorkerContext, OptimizationRunRecord | None]:
    environment = worker_context()
    run = RunStore(environment.engine).get(run_id)
    return environment, None if run is None or run.status in TERMINAL_RUN_STATUSES else run


def _guarded(
    environment: WorkerContext, task_id: str, work: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``work()`` with its LM records held back and written once; an error as a result."""
    with pending_records() as held:
        try:
            return work()
        except (Ignore, Retry, Reject):
            raise
        except Exception as exc:  # a user's metric or module raised: this task's error
            return {"error": error_of(exc)}
        finally:
            if held:
                try:
                    _write_held(environment, held)
                except Exception:
                    logger.exception("could not record the LM calls of task %s", task_id)


def prepare(task_id: str, run_id: str) -> dict[str, Any]:
    """The strategy's preparation (COPRO's proposals, MIPROv2's demo sets and
    instructions): ``{"state": ...}`` or ``{"error": ...}``."""
    environment, run = _live_run(run_id)
    if run is None:
        return {"error": ENDED}
    plan = RunPlan.model_validate(run.config)
    checkpoint = RunCheckpoint.model_validate(run.checkpoint or {})

    def work() -> dict[str, Any]:
        metric = resolve_metric(plan.metric, environment.settings.allowed_imports)
        task_lm = LM(plan.lm, http_client=environment.http, **plan.lm_kwargs)
        teacher = _teacher(environment, plan)
        prompt_lm = LM(plan.teacher_lm or plan.lm, http_client=environment.http, **plan.lm_kwargs)
        strategy = strategy_for(plan, metric, teacher, prompt_lm=prompt_lm, task_lm=task_lm)
        bench = bench_of(environment, plan)
        state = (
            strategy.start(bench) if checkpoint.state is None else strategy.load(checkpoint.state)
        )
        with context(correlation_id=run.correlation_id, parent_id=run.id, task_id=task_id):
            state = strategy.prepare(state, bench)
        return {"state": state.model_dump(mode="json")}

    return _guarded(environment, task_id, work)


def _teacher(environment: WorkerContext, plan: RunPlan) -> LM | None:
    return None if plan.teacher_lm is None else LM(plan.teacher_lm, http_client=environment.http)


def bootstrapper(environment: WorkerContext, plan: RunPlan) -> BootstrapFewShot:
    """The run's BootstrapFewShot, with its threads and teacher LM, as its strategy makes it."""
    metric = resolve_metric(plan.metric, environment.settings.allowed_imports)
    optimizer: BootstrapFewShot = strategy_for(plan, metric, _teacher(environment, plan)).optimizer  # type: ignore[attr-defined]
    return optimizer


def bootstrap(task_id: str, run_id: str, start: int, stop: int) -> dict[str, Any]:
    """BootstrapFewShot's teacher on ``trainset[start:stop]``:
    ``{"outcomes": {index: [BootstrapOutcome, ...]}}`` or ``{"error": ...}``."""
    environment, run = _live_run(run_id)
    if run is None:
        return {"error": ENDED}
    plan = RunPlan.model_validate(run.config)

    def work() -> dict[str, Any]:
        reason = budget_reason(plan, *spent(environment, run))
        if reason is not None:
            raise BudgetSpent(f"not started: {reason}")
        bench = bench_of(environment, plan)
        lm = LM(plan.lm, http_client=environment.http, **plan.lm_kwargs)
        with context(lm=lm, correlation_id=run.correlation_id, parent_id=run.id, task_id=task_id):
            found = bootstrapper(environment, plan).bootstrap_span(
                bench.student, trainset=bench.trainset, start=start, stop=stop
            )
        return {
            "outcomes": {
                str(i): [o.model_dump(mode="json") for o in rounds] for i, rounds in found.items()
            }
        }

    return _guarded(environment, task_id, work)


def candidate(task_id: str, run_id: str, round_index: int, job: CandidateJob) -> dict[str, Any]:
    """Build (and unless ``build_only``, score part ``job.part`` of) one candidate: a
    :class:`CandidateOutcome` dict, with the error when the candidate failed."""
    environment = worker_context()
    run = RunStore(environment.engine).get(run_id)
    outcome = CandidateOutcome(
        iteration=job.iteration, seed=job.seed, round=round_index, task_id=task_id,
        part=job.part, parts=job.parts,
    )  # fmt: skip
    if run is None or run.status in TERMINAL_RUN_STATUSES:
        message = f"no optimization run {run_id}" if run is None else f"run {run.status}"
        outcome.error = {"type": "JobCancelledError", "message": message}
        return outcome.model_dump(mode="json")
    result = _guarded(environment, task_id, lambda: _run_candidate(environment, run, outcome, job))
    if "error" in result:
        outcome.error = result["error"]
        logger.warning("candidate %d of run %s failed: %s", job.iteration, run_id, outcome.error)
    return outcome.model_dump(mode="json")


def _run_candidate(
    environment: WorkerContext,
    run: OptimizationRunRecord,
    outcome: CandidateOutcome,
    job: CandidateJob,
) -> dict[str, Any]:
    plan = RunPlan.model_validate(run.config)
    reason = budget_reason(plan, *spent(environment, run))
    if reason is not None:
        raise BudgetSpent(f"not started: {reason}")
    allowed = environment.settings.allowed_imports
    metric = resolve_metric(plan.metric, allowed)

    def make_lm(model: str, options: dict[str, Any]) -> LM:
        return LM(model, http_client=environment.http, **options)

    teacher = _teacher(environment, plan)
    strategy = strategy_for(plan, metric, teacher, make_lm=make_lm, allowed=allowed)
    checkpoint = RunCheckpoint.model_validate(run.checkpoint or {})
    bench = bench_of(environment, plan)
    state = strategy.start(bench) if checkpoint.state is None else strategy.load(checkpoint.state)
    chosen = (
        Candidate.model_validate(job.candidate)
        if job.candidate is not None
        else Candidate(iteration=job.iteration, seed=job.seed)
    )
    lm = LM(plan.lm, http_client=environment.http, **plan.lm_kwargs)
    with context(
        lm=lm, correlation_id=run.correlation_id, parent_id=run.id, task_id=outcome.task_id
    ):
        if job.program is not None:
            program = environment.programs.build(job.program)
        else:
            program = strategy.build(chosen, bench, state)
        if not job.build_only:
            devset = part_of(strategy.devset(chosen, bench, state), job.part, job.parts)
            scored = _score_within_budget(environment, run, plan, program, devset, metric)
            outcome.score = scored.score
            outcome.score_sum = sum(_as_number(s) for s in scored.subscores)
            outcome.examples = len(devset)
    params = (chosen.proposal or {}).get("params")
    if params is not None:  # MIPROv2 trials: the combination, and whether scored on all
        outcome.params = dict(params)
        outcome.full_eval = chosen.full_eval
    # A minibatch score never becomes the best program; parts past the first need not
    # carry the program the first one does.
    if outcome.full_eval and job.part == 0:
        outcome.program = program_to_spec(program).model_dump(mode="json")
    outcome.instruction = first_instruction(program)
    return {}


def _as_number(subscore: Any) -> float:
    """A metric's value for one example as ``Evaluate`` sums it (a number or ``.score``)."""
    return float(getattr(subscore, "score", subscore))


def _score_within_budget(
    environment: WorkerContext,
    run: OptimizationRunRecord,
    plan: RunPlan,
    program: Any,
    devset: list[Any],
    metric: Any,
) -> CandidateScore:
    """Score ``program`` on ``devset``; with a budget, chunk by chunk, checking the run's
    spend before each chunk (raises :class:`BudgetSpent`: a partial score is no score)."""
    if not devset:  # a part past the last example
        return CandidateScore(score=0.0, subscores=[])
    if plan.max_lm_calls is None and plan.budget_usd is None:
        return evaluate_candidate(program, devset, metric=metric, num_threads=plan.num_threads)
    size = max(BUDGET_CHUNK_MIN, 2 * plan.num_threads)
    subscores: list[Any] = []
    for start in range(0, len(devset), size):
        held = active_records()
        if held:  # the spend so far must be in SQL to be summed
            _write_held(environment, held)
        reason = budget_reason(plan, *spent(environment, run))
        if reason is not None:
            raise BudgetSpent(f"stopped after {start} of {len(devset)} examples: {reason}")
        chunk = devset[start : start + size]
        subscores += evaluate_candidate(
            program, chunk, metric=metric, num_threads=plan.num_threads
        ).subscores
    total = sum(_as_number(s) for s in subscores)
    score = round(100 * total / len(devset), 2) if devset else 0.0
    return CandidateScore(score=score, subscores=subscores)


__all__ = ["BudgetSpent", "CandidateJob", "bootstrap", "candidate", "error_of", "prepare"]
