"""Optimization runs on the queue: the task entry points.

``dspyq.optimize.run`` (queue ``dspyq.optimize``) starts a run, and every other task here
is one step of it: the coordinator's (``step``, ``fanout``, ``bootstrapped``, on
``dspyq.optimize``; see :mod:`dspyq.tasks.optimize_rounds`, the queue executor of the
optimizers' round strategies) and the provider pool's (``candidate``, ``build``,
``propose``, ``prepare``, ``bootstrap``; see :mod:`dspyq.tasks.optimize_work`).
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from dspyq.core.program import program_to_spec
from dspyq.optimize.bootstrap import BootstrapOutcome
from dspyq.optimize.strategy import Candidate
from dspyq.store.models import TERMINAL_RUN_STATUSES, OptimizationRunRecord
from dspyq.store.runs import RunStore
from dspyq.tasks import optimize_rounds as rounds
from dspyq.tasks import optimize_work as work
from dspyq.tasks.context import WorkerContext, worker_context
from dspyq.tasks.mipro_run import MIPRO
from dspyq.tasks.optimization import (
    CandidateOutcome,
    RunCheckpoint,
    RunPlan,
    first_instruction,
)
from dspyq.tasks.optimize_rounds import (
    BOOTSTRAP_TASK,
    BOOTSTRAPPED_TASK,
    BUILD_TASK,
    CANDIDATE_TASK,
    FANOUT_TASK,
    PREPARE_TASK,
    PROPOSE_TASK,
    STEP_TASK,
    advance,
)
from dspyq.tasks.protocol import RUN_TASK

__all__ = ["RUN_TASK", "advance"]


@shared_task(name=RUN_TASK, bind=True, max_retries=None)
def optimize_run(self: Task, run_id: str) -> None:
    """Start (or, redelivered, resume) an optimization run."""
    advance(run_id, None, [])


@shared_task(name=STEP_TASK, bind=True, max_retries=None)
def optimize_step(
    self: Task,
    outcomes: list[dict[str, Any]],
    run_id: str,
    round_index: int,
    failed: list[dict[str, Any]] | None = None,
) -> None:
    """A round's candidates are done (``failed``: those that could not be built):
    checkpoint them and go on."""
    advance(run_id, round_index, [*outcomes, *(failed or [])])


@shared_task(name=PROPOSE_TASK, bind=True, max_retries=None)
def optimize_propose(self: Task, run_id: str, round_index: int) -> dict[str, Any]:
    """COPRO's proposals for a round (the strategy's preparation); never raises."""
    return work.prepare(str(self.request.id), run_id)


@shared_task(name=PREPARE_TASK, bind=True, max_retries=None)
def optimize_prepare(self: Task, run_id: str, round_index: int) -> dict[str, Any]:
    """MIPROv2's demo sets and instruction proposals (the strategy's preparation)."""
    return work.prepare(str(self.request.id), run_id)


@shared_task(name=BOOTSTRAP_TASK, bind=True, max_retries=None)
def optimize_bootstrap(self: Task, run_id: str, start: int, stop: int) -> dict[str, Any]:
    """Run BootstrapFewShot's teacher on ``trainset[start:stop]``; never raises."""
    return work.bootstrap(str(self.request.id), run_id, start, stop)


@shared_task(name=CANDIDATE_TASK, bind=True, max_retries=None)
def optimize_candidate(
    self: Task,
    run_id: str,
    seed: int,
    round_index: int,
    iteration: int,
    candidate: dict[str, Any] | None = None,
    program: dict[str, Any] | None = None,
    part: int = 0,
    parts: int = 1,
) -> dict[str, Any]:
    """Score one candidate (its ``program`` built already, or built here) on part ``part``
    of ``parts`` of its devset; never raises (the chord must fire)."""
    job = work.CandidateJob(
        iteration=iteration, seed=seed, candidate=candidate, program=program, part=part,
        parts=parts,
    )  # fmt: skip
    return work.candidate(str(self.request.id), run_id, round_index, job)


@shared_task(name=BUILD_TASK, bind=True, max_retries=None)
def optimize_build(
    self: Task, run_id: str, seed: int, round_index: int, iteration: int
) -> dict[str, Any]:
    """Build (bootstrap) a candidate without scoring it; never raises (the chord must
    fire). Returns a :class:`CandidateOutcome` dict with its program or its error."""
    job = work.CandidateJob(iteration=iteration, seed=seed, build_only=True)
    return work.candidate(str(self.request.id), run_id, round_index, job)


@shared_task(name=FANOUT_TASK, bind=True, max_retries=None)
def optimize_fanout(
    self: Task, proposed: dict[str, Any] | list[dict[str, Any]], run_id: str, round_index: int
) -> None:
    """Score a round's built candidates (a list), or the candidates its preparation made
    possible (once, however often this is delivered)."""
    live = _live_run(run_id)
    if live is None:
        return
    environment, runs, run, plan, checkpoint = live
    if checkpoint.fanned_out >= round_index:
        return
    if isinstance(proposed, list):
        built = [CandidateOutcome.model_validate(b) for b in proposed]
        ok = [b for b in built if b.error is None and b.program is not None]
        failed = [b for b in built if b.error is not None or b.program is None]
        rounds.score_round(run, plan, round_index, built=ok, failed=failed)
    else:
        candidates: list[Candidate] = []
        if proposed.get("state") is not None:
            strategy = rounds.strategy_for(plan)
            state = strategy.load(proposed["state"])
            candidates = strategy.next_round(state, plan.candidates_per_round)
            checkpoint.state = state.model_dump(mode="json")
        if not candidates:
            error = proposed.get("error") or {"message": "the prompt model proposed nothing"}
            what = (
                "MIPROv2 preparation"
                if plan.optimizer == MIPRO
                else f"proposals for round {round_index}"
            )
            rounds.finish(environment, run, plan, checkpoint, "failed",
                          f"{what} failed: {error.get('message')}")  # fmt: skip
            return
        # The candidates read the state from the checkpoint: store it before they start.
        runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json"))
        examples = rounds.devset_size(candidates)
        rounds.score_round(run, plan, round_index, candidates=candidates, examples=examples)
    checkpoint.fanned_out = round_index
    runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json"))


@shared_task(name=BOOTSTRAPPED_TASK, bind=True, max_retries=None)
def optimize_bootstrapped(
    self: Task, results: list[dict[str, Any]], run_id: str, round_index: int, start: int
) -> None:
    """A wave of bootstrapping is done: walk every outcome so far in trainset order
    (DSPy's walk, hence its demos) and score the compiled candidate, or bootstrap the
    next wave when the walk needs examples not run yet (once per wave, however often
    this is delivered)."""
    live = _live_run(run_id)
    if live is None:
        return
    environment, runs, run, plan, checkpoint = live
    state = checkpoint.bootstrap or {"outcomes": {}, "next": 0}
    if checkpoint.fanned_out >= round_index or int(state["next"]) > start:
        return
    outcome = CandidateOutcome(iteration=1, seed=0, round=round_index)
    for result in results:
        state["outcomes"].update(result.get("outcomes") or {})
    known = {
        int(i): [BootstrapOutcome.model_validate(o) for o in found]
        for i, found in state["outcomes"].items()
    }
    compiled = None
    try:
        bench = rounds.bench_of(environment, plan)
        compiled = work.bootstrapper(environment, plan).compile_from_outcomes(
            bench.student, trainset=bench.trainset, outcomes=known
        )
    except Exception as exc:
        outcome.error = work.error_of(exc)
    # A window that failed (e.g. the budget ran out) matters only if the walk needs it.
    errors = [r["error"] for r in results if r.get("error") is not None]
    if compiled is None and outcome.error is None and errors:
        outcome.error = errors[0]
    if compiled is None and outcome.error is None:
        following = min(set(range(len(plan.trainset))) - set(known))
        rounds.bootstrap_wave(run, plan, round_index, following)
        checkpoint.bootstrap = {**state, "next": following}
        runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json"))
        return
    if compiled is not None:
        outcome.program = program_to_spec(compiled).model_dump(mode="json")
        outcome.instruction = first_instruction(compiled)
        rounds.score_round(run, plan, round_index, built=[outcome])
    else:
        rounds.score_round(run, plan, round_index, built=[], failed=[outcome])
    checkpoint.bootstrap = None  # its outcomes are in the candidate now
    checkpoint.fanned_out = round_index
    runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json"))


def _live_run(
    run_id: str,
) -> tuple[WorkerContext, RunStore, OptimizationRunRecord, RunPlan, RunCheckpoint] | None:
    """A run still going, with its plan and checkpoint; None once it has ended (or is gone)."""
    environment = worker_context()
    runs = RunStore(environment.engine)
    run = runs.get(run_id)
    if run is None or run.status in TERMINAL_RUN_STATUSES:
        return None
    plan = RunPlan.model_validate(run.config)
    return environment, runs, run, plan, RunCheckpoint.model_validate(run.checkpoint or {})
