"""The queue executor of round strategies: the coordinator of an optimization run.

It drives the run's optimizer's :class:`~dspyq.optimize.strategy.RoundStrategy` (the
same one ``compile()`` drives in-process) a round at a time, never waiting on its
children: a round is sent as a chord whose header runs on the provider pool of the run's
LM and whose body (``dspyq.optimize.step``) comes back here. A round is, as the strategy
asks: its preparation (proposals, ``dspyq.optimize.propose`` / ``prepare``), then its
candidates scored, each in parts (slices of its devset, a task each) so even one
candidate spreads over the pool. Candidates whose building calls the LM (random search's
bootstrapping) are built first, a ``dspyq.optimize.build`` task each; BootstrapFewShot's
one candidate is bootstrapped in waves of trainset windows
(``dspyq.optimize.bootstrap``) walked in trainset order (``dspyq.optimize.bootstrapped``).

Each step folds its round's outcomes into the strategy's state (one
``optimization_iteration`` event per counted candidate), checkpoints it in the run row,
sums the run's LM usage against its budget, and sends the next round or finishes: the
best program is saved in the program registry. Every step is idempotent (events by
derived ids, a round merged once, a program saved once per run), so a coordinator killed
mid-step is redelivered (late acks) and resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chain, chord, signature

from dspyq.events import Event
from dspyq.lm.lm import split_model
from dspyq.optimize.strategy import Bench, Candidate, Outcome, RoundStrategy
from dspyq.store.lm_requests import LMRequestStore
from dspyq.store.models import TERMINAL_RUN_STATUSES, OptimizationRunRecord
from dspyq.store.programs import ProgramStore
from dspyq.store.runs import RunStore
from dspyq.tasks.context import WorkerContext, worker_context
from dspyq.tasks.mipro_run import MIPRO
from dspyq.tasks.optimization import (
    SINGLE_BOOTSTRAP,
    CandidateOutcome,
    CandidateSummary,
    RunCheckpoint,
    RunPlan,
    combine_parts,
    strategy_for,
)
from dspyq.tasks.protocol import OPTIMIZE_QUEUE, lm_queue

logger = logging.getLogger(__name__)

STEP_TASK = "dspyq.optimize.step"
CANDIDATE_TASK = "dspyq.optimize.candidate"
PROPOSE_TASK = "dspyq.optimize.propose"
FANOUT_TASK = "dspyq.optimize.fanout"
PREPARE_TASK = "dspyq.optimize.prepare"
BUILD_TASK = "dspyq.optimize.build"
BOOTSTRAP_TASK = "dspyq.optimize.bootstrap"
BOOTSTRAPPED_TASK = "dspyq.optimize.bootstrapped"


def valsets(plan: RunPlan) -> tuple[list[Any], list[Any] | None]:
    trainset = [e.example() for e in plan.trainset]
    valset = [e.example() for e in plan.valset] if plan.valset_given else None
    return trainset, valset


def bench_of(environment: WorkerContext, plan: RunPlan) -> Bench:
    """The run's student and data, live."""
    trainset, valset = valsets(plan)
    return Bench(environment.programs.build(plan.program), trainset, valset)


def strategy_state(
    environment: WorkerContext, plan: RunPlan, checkpoint: RunCheckpoint
) -> tuple[RoundStrategy[Any], Any]:
    """The run's strategy (for planning and folding: no metric, no LM) and its state as
    checkpointed (the start state before the first round)."""
    strategy = strategy_for(plan)
    if checkpoint.state is not None:
        return strategy, strategy.load(checkpoint.state)
    return strategy, strategy.start(bench_of(environment, plan))


def _event(run: OptimizationRunRecord, suffix: str, event_type: str, **data: Any) -> Event:
    return Event(
        event_id=f"{run.id}:{suffix}",
        event_type=event_type,
        correlation_id=run.correlation_id,
        parent_id=run.id,
        data={"optimization_id": run.id, **data},
    )


def _as_outcome(outcome: CandidateOutcome) -> Outcome:
    error = None if outcome.error is None else str(outcome.error.get("message", ""))
    return Outcome(
        iteration=outcome.iteration,
        seed=outcome.seed,
        score=outcome.score,
        error=error,
        instruction=outcome.instruction,
    )


def _merge(
    environment: WorkerContext,
    run: OptimizationRunRecord,
    plan: RunPlan,
    checkpoint: RunCheckpoint,
    outcomes: list[CandidateOutcome],
) -> None:
    """Fold one round's outcomes (parts joined) into the strategy's state and
    ``checkpoint``, and record the events of those the strategy counted."""
    strategy, state = strategy_state(environment, plan, checkpoint)
    combined = combine_parts(outcomes)
    counted = {
        f.outcome.iteration for f in strategy.fold(state, [_as_outcome(o) for o in combined])
    }
    chosen = strategy.best(state)
    for outcome in (o for o in combined if o.iteration in counted):
        error = None if outcome.error is None else str(outcome.error.get("message", ""))
        checkpoint.candidates.append(
            CandidateSummary(
                iteration=outcome.iteration, seed=outcome.seed, score=outcome.score, error=error
            )
        )
        if outcome.iteration == chosen and outcome.program is not None:
            checkpoint.best = outcome
        environment.emit(
            _event(
                run,
                f"iteration:{outcome.iteration}",
                "optimization_iteration",
                iteration=outcome.iteration,
                round=outcome.round,
                seed=outcome.seed,
                candidate_instruction=outcome.instruction,
                evaluation_score=outcome.score,
                best_score=None if checkpoint.best is None else checkpoint.best.score,
                metric=plan.metric,
                error=error,
                **(
                    {}
                    if outcome.params is None
                    else {"params": outcome.params, "full_eval": outcome.full_eval}
                ),
            )
        )
    checkpoint.state = state.model_dump(mode="json")
    checkpoint.lm_calls, checkpoint.cost_usd = spent(environment, run)
    checkpoint.round += 1


def spent(environment: WorkerContext, run: OptimizationRunRecord) -> tuple[int, float]:
    """The run's LM calls that reached a provider (cache hits are free) and their cost."""
    usage = LMRequestStore(environment.engine).usage(correlation_id=run.correlation_id)
    return usage.requests - usage.cache_hits, usage.cost_usd


def budget_reason(plan: RunPlan, lm_calls: int, cost_usd: float) -> str | None:
    """Why the run must stop now for its budget, or None."""
    if plan.max_lm_calls is not None and lm_calls >= plan.max_lm_calls:
        return f"max_lm_calls reached: {lm_calls} LM calls (limit {plan.max_lm_calls})"
    if plan.budget_usd is not None and cost_usd >= plan.budget_usd:
        return f"budget_usd spent: ${cost_usd:.6f} (limit ${plan.budget_usd})"
    return None


def _save_best(
    environment: WorkerContext,
    run: OptimizationRunRecord,
    plan: RunPlan,
    checkpoint: RunCheckpoint,
) -> None:
    """Save the best program once per run (a redelivered step finds it saved)."""
    best = checkpoint.best
    if best is None or best.program is None or checkpoint.saved is not None:
        return
    programs = ProgramStore(environment.engine)
    found = [r for r in programs.list(plan.run_name) if r.run_id == run.id]
    record = (
        found[0]
        if found
        else programs.save(
            plan.run_name, str(best.program["kind"]), best.program, best.score, run_id=run.id
        )
    )
    checkpoint.saved = {"name": record.name, "version": record.version}


def finish(
    environment: WorkerContext,
    run: OptimizationRunRecord,
    plan: RunPlan,
    checkpoint: RunCheckpoint,
    status: str,
    reason: str,
) -> None:
    if checkpoint.best is None and status == "succeeded":
        errors = [c.error for c in checkpoint.candidates if c.error]
        status = "failed"
        reason = "no candidate could be evaluated" + (f": {errors[0]}" if errors else "")
    _save_best(environment, run, plan, checkpoint)
    best = None if checkpoint.best is None else checkpoint.best.score
    RunStore(environment.engine).update(
        run.id,
        status=status,
        stop_reason=reason[:1024],
        checkpoint=checkpoint.model_dump(mode="json"),
        best_score=best,
        iterations=len(checkpoint.candidates),
    )
    environment.emit(
        _event(
            run,
            "complete",
            "optimization_complete",
            status=status,
            stop_reason=reason,
            best_score=best,
            iterations=len(checkpoint.candidates),
            program=checkpoint.saved,
        )
    )


def score_round(
    run: OptimizationRunRecord,
    plan: RunPlan,
    round_index: int,
    candidates: list[Candidate] | None = None,
    built: list[CandidateOutcome] | None = None,
    failed: list[CandidateOutcome] | None = None,
    examples: int | None = None,
) -> None:
    """Send a round's candidates to the LM's pool as a chord whose body is the next step;
    each candidate in :meth:`RunPlan.parts_per_candidate` tasks, one per devset slice
    (``examples``: its size, when not the valset's).

    The ``candidates`` are built by their scoring tasks; ``built`` ones carry their
    program (``failed``: those whose build failed, handed to the step as they are).
    """
    jobs: list[dict[str, Any]] = [
        {"seed": c.seed, "iteration": c.iteration, "candidate": c.model_dump(mode="json")}
        for c in candidates or []
    ] + [{"seed": b.seed, "iteration": b.iteration, "program": b.program} for b in built or []]
    parts = plan.parts_per_candidate(len(jobs), examples)
    header = [
        signature(
            CANDIDATE_TASK,
            kwargs={
                "run_id": run.id,
                "round_index": round_index,
                **job,
                "part": part,
                "parts": parts,
            },
            queue=lm_queue(split_model(plan.lm)[0]),
        )
        for job in jobs
        for part in range(parts)
    ]
    body = signature(
        STEP_TASK,
        kwargs={
            "run_id": run.id, "round_index": round_index,
            "failed": [f.model_dump(mode="json") for f in failed or []],
        },
        queue=OPTIMIZE_QUEUE,
    )  # fmt: skip
    if not header:  # every build failed: nothing to score, the step records why
        body.apply_async(args=([],))
        return
    chord(header, body).apply_async()


def _chord_then(
    plan: RunPlan, tasks: list[tuple[str, dict[str, Any]]], then: str, **kwargs: Any
) -> None:
    """``tasks`` on the LM's pool, then ``then`` (with their results) back here."""
    header = [
        signature(name, kwargs=k, queue=lm_queue(split_model(plan.lm)[0])) for name, k in tasks
    ]
    chord(header, signature(then, kwargs=kwargs, queue=OPTIMIZE_QUEUE)).apply_async()


def bootstrap_wave(run: OptimizationRunRecord, plan: RunPlan, round_index: int, start: int) -> None:
    """Bootstrap the trainset from ``start`` in windows, a task each, on the LM's pool;
    their chord's body (``dspyq.optimize.bootstrapped``) walks the outcomes in order."""
    windows = [
        (BOOTSTRAP_TASK, {"run_id": run.id, "start": a, "stop": b})
        for a, b in plan.bootstrap_windows(start)
    ]
    _chord_then(plan, windows, BOOTSTRAPPED_TASK, run_id=run.id, round_index=round_index,
                start=start)  # fmt: skip


def _send(
    run: OptimizationRunRecord,
    plan: RunPlan,
    round_index: int,
    strategy: RoundStrategy[Any],
    candidates: list[Candidate],
) -> None:
    """Send round ``round_index``: its preparation first (then ``dspyq.optimize.fanout``
    scores what it asks), else its candidates, built first where building calls the LM."""
    if not candidates:
        first = PREPARE_TASK if plan.optimizer == MIPRO else PROPOSE_TASK
        kwargs = {"run_id": run.id, "round_index": round_index}
        chain(
            signature(first, kwargs=kwargs, queue=lm_queue(split_model(plan.teacher_lm or plan.lm)[0])),
            signature(FANOUT_TASK, kwargs=kwargs, queue=OPTIMIZE_QUEUE),
        ).apply_async()  # fmt: skip
    elif plan.optimizer == SINGLE_BOOTSTRAP:
        bootstrap_wave(run, plan, round_index, 0)
    elif strategy.builds_apart:
        builds = [
            (BUILD_TASK, {"run_id": run.id, "seed": c.seed, "round_index": round_index,
                          "iteration": c.iteration})
            for c in candidates
        ]  # fmt: skip
        _chord_then(plan, builds, FANOUT_TASK, run_id=run.id, round_index=round_index)
    else:
        score_round(run, plan, round_index, candidates=candidates, examples=devset_size(candidates))


def devset_size(candidates: list[Candidate]) -> int | None:
    sizes = [len(c.indices) for c in candidates if c.indices is not None]
    return max(sizes) if sizes else None


def advance(run_id: str, round_index: int | None, outcomes: list[dict[str, Any]]) -> None:
    """Merge round ``round_index`` (if not merged yet), then send the next round or finish."""
    environment = worker_context()
    runs = RunStore(environment.engine)
    run = runs.get(run_id)
    if run is None:
        logger.warning("optimization run %s does not exist; nothing to do", run_id)
        return
    if run.status in TERMINAL_RUN_STATUSES:
        logger.info("optimization run %s already %s", run_id, run.status)
        return
    plan = RunPlan.model_validate(run.config)
    checkpoint = RunCheckpoint.model_validate(run.checkpoint or {})
    if run.status == "pending":
        runs.update(run_id, status="running")
        environment.emit(_event(run, "start", "optimization_start", optimizer=plan.optimizer))
    if round_index is not None and round_index == checkpoint.round:
        _merge(
            environment,
            run,
            plan,
            checkpoint,
            [CandidateOutcome.model_validate(o) for o in outcomes],
        )
        best = None if checkpoint.best is None else checkpoint.best.score
        if not runs.update(
            run_id,
            checkpoint=checkpoint.model_dump(mode="json"),
            best_score=best,
            iterations=len(checkpoint.candidates),
        ):
            return  # cancelled meanwhile
    over = budget_reason(plan, checkpoint.lm_calls, checkpoint.cost_usd)
    if checkpoint.round > 0 and over is not None:
        finish(environment, run, plan, checkpoint, "budget_exhausted", over)
        return
    strategy, state = strategy_state(environment, plan, checkpoint)
    preparing = strategy.needs_preparation(state)
    candidates = [] if preparing else strategy.next_round(state, plan.candidates_per_round)
    if not preparing and not candidates:
        finish(environment, run, plan, checkpoint, "succeeded", strategy.stop_reason(state))
        return
    if checkpoint.dispatched >= checkpoint.round:
        return  # a redelivered step: this round is out already
    # The round's tasks read the state from the checkpoint: it is stored before they start.
    checkpoint.state = state.model_dump(mode="json")
    if not runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json")):
        return  # ended (cancelled) meanwhile
    send_round(run, plan, checkpoint.round, strategy, candidates)
    checkpoint.dispatched = checkpoint.round
    runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json"))


send_round = _send
"""Where a round leaves the coordinator (a test wraps it to kill the coordinator then)."""
