"""Optimization runs on the queue: a coordinator that never waits on its children.

``dspyq.optimize.run`` (queue ``dspyq.optimize``) starts a run: it sends the first
round as a chord whose header is ``dspyq.optimize.candidate`` tasks on the provider pool
of the run's LM, and whose body is ``dspyq.optimize.step`` back on ``dspyq.optimize``.
A round of few candidates scores each in parts (slices of the devset, a task each), so
even one candidate spreads over the pool's workers. Few-shot candidates are built first:
one ``dspyq.optimize.build`` task per seed, or, for BootstrapFewShot's one candidate,
waves of ``dspyq.optimize.bootstrap`` tasks over trainset windows whose outcomes the
coordinator walks in trainset order (``dspyq.optimize.bootstrapped``); either chord's
body sends the scoring chord. Each step merges its round's outcomes into the checkpoint
(one ``optimization_iteration`` event per candidate), sums the run's LM usage against its
budget, and sends the next round or finishes: the best program is saved in the
program registry. No worker blocks while candidates run. COPRO rounds first ask the
pool for proposals (``dspyq.optimize.propose``); a MIPROv2 run first prepares its
search there (``dspyq.optimize.prepare``, see :mod:`dspyq.tasks.mipro_run`).

A budget (``max_lm_calls``, ``budget_usd``) is checked by the coordinator after each
round, by each candidate before it starts, and, within a candidate, between chunks of
examples: a candidate stopped part-way has no score, the run ends
``budget_exhausted`` with the best program so far and the reason.

Everything lives in the run row's checkpoint, and every step is idempotent (events by
derived ids, a round merged once, a program saved once per run), so a coordinator
killed mid-step is redelivered (late acks) and resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, chain, chord, shared_task, signature
from celery.exceptions import Ignore, Reject, Retry
from pydantic import BaseModel

from dspyq.core.context import context
from dspyq.core.program import program_to_spec
from dspyq.errors import DspyqError
from dspyq.events import Event
from dspyq.lm.lm import LM, split_model
from dspyq.optimize.bootstrap import BootstrapFewShot, BootstrapOutcome
from dspyq.optimize.mipro import MIPROv2
from dspyq.optimize.random_search import CandidateScore, evaluate_candidate
from dspyq.optimize.strategy import Bench, Candidate, Outcome, RoundStrategy
from dspyq.store.buffer import PendingRecords, active_records, pending_records
from dspyq.store.lm_requests import LMRequestStore
from dspyq.store.models import TERMINAL_RUN_STATUSES, OptimizationRunRecord
from dspyq.store.programs import ProgramStore
from dspyq.store.runs import RunStore
from dspyq.tasks.app import OPTIMIZE_QUEUE, lm_queue
from dspyq.tasks.environment import TaskEnvironment, task_environment
from dspyq.tasks.metrics import resolve_metric
from dspyq.tasks.mipro_run import (
    MIPRO,
    SearchState,
    TrialDone,
    TrialJob,
    next_trials,
    prepare_search,
)
from dspyq.tasks.optimization import (
    INSTRUCTION_SEARCH,
    SINGLE_BOOTSTRAP,
    STRATEGY_OPTIMIZERS,
    CandidateOutcome,
    CandidateSummary,
    RunCheckpoint,
    RunPlan,
    combine_parts,
    first_instruction,
    part_of,
    strategy_for,
)

logger = logging.getLogger(__name__)

RUN_TASK = "dspyq.optimize.run"
STEP_TASK = "dspyq.optimize.step"
CANDIDATE_TASK = "dspyq.optimize.candidate"
PROPOSE_TASK = "dspyq.optimize.propose"
FANOUT_TASK = "dspyq.optimize.fanout"
PREPARE_TASK = "dspyq.optimize.prepare"
BUILD_TASK = "dspyq.optimize.build"
BOOTSTRAP_TASK = "dspyq.optimize.bootstrap"
BOOTSTRAPPED_TASK = "dspyq.optimize.bootstrapped"
BUDGET_CHUNK_MIN = 8
"""With a budget, a candidate scores its examples in chunks of at least this many (or
twice its threads) and checks the run's spend between chunks."""


def _event(run: OptimizationRunRecord, suffix: str, event_type: str, **data: Any) -> Event:
    return Event(
        event_id=f"{run.id}:{suffix}",
        event_type=event_type,
        correlation_id=run.correlation_id,
        parent_id=run.id,
        data={"optimization_id": run.id, **data},
    )


def _merge(
    env: TaskEnvironment,
    run: OptimizationRunRecord,
    plan: RunPlan,
    checkpoint: RunCheckpoint,
    outcomes: list[CandidateOutcome],
) -> None:
    """Fold one round's outcomes (parts joined) into ``checkpoint`` and record their events."""
    search = None if checkpoint.search is None else SearchState.model_validate(checkpoint.search)
    combined = combine_parts(outcomes)
    chosen: int | None = None
    if plan.optimizer in STRATEGY_OPTIMIZERS:
        strategy, state = _strategy_state(env, plan, checkpoint)
        counted = {f.outcome.iteration for f in strategy.fold(state, _as_outcomes(combined))}
        combined = [o for o in combined if o.iteration in counted]
        chosen = strategy.best(state)
        checkpoint.state = state.model_dump(mode="json")
    for outcome in combined:
        error = None if outcome.error is None else str(outcome.error.get("message", ""))
        if search is not None and outcome.params is not None:
            search.trials.append(
                TrialDone(
                    number=outcome.iteration,
                    params=outcome.params,
                    score=outcome.score,
                    full_eval=outcome.full_eval,
                )
            )
        checkpoint.candidates.append(
            CandidateSummary(
                iteration=outcome.iteration, seed=outcome.seed, score=outcome.score, error=error
            )
        )
        if chosen is not None:
            if outcome.iteration == chosen and outcome.program is not None:
                checkpoint.best = outcome  # the strategy's choice
        elif (
            outcome.score is not None
            and outcome.full_eval  # MIPROv2: only full evaluations compete
            and outcome.program is not None
        ) and (
            checkpoint.best is None
            or checkpoint.best.score is None
            or outcome.score > checkpoint.best.score
        ):
            checkpoint.best = outcome
        env.emit(
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
    if search is not None:
        checkpoint.search = search.model_dump(mode="json")
    checkpoint.lm_calls, checkpoint.cost_usd = _spent(env, run)
    checkpoint.round += 1


def _strategy_state(
    env: TaskEnvironment, plan: RunPlan, checkpoint: RunCheckpoint
) -> tuple[RoundStrategy[Any], Any]:
    """The run's round strategy (for planning and folding: no metric, no LM) and its
    state as checkpointed (the start state before the first round)."""
    strategy = strategy_for(plan)
    if checkpoint.state is not None:
        return strategy, strategy.load(checkpoint.state)
    return strategy, strategy.start(_bench(env, plan))


def _bench(env: TaskEnvironment, plan: RunPlan) -> Bench:
    trainset, valset = _valsets(plan)
    return Bench(env.programs.build(plan.program), trainset, valset)


def _as_outcomes(outcomes: list[CandidateOutcome]) -> list[Outcome]:
    return [
        Outcome(
            iteration=o.iteration,
            seed=o.seed,
            score=o.score,
            error=None if o.error is None else str(o.error.get("message", "")),
            instruction=o.instruction,
            prefix=o.prefix,
        )
        for o in outcomes
    ]


def _spent(env: TaskEnvironment, run: OptimizationRunRecord) -> tuple[int, float]:
    """The run's LM calls that reached a provider (cache hits are free) and their cost."""
    usage = LMRequestStore(env.engine).usage(correlation_id=run.correlation_id)
    return usage.requests - usage.cache_hits, usage.cost_usd


def _budget_reason(plan: RunPlan, lm_calls: int, cost_usd: float) -> str | None:
    """Why the run must stop now for its budget, or None."""
    if plan.max_lm_calls is not None and lm_calls >= plan.max_lm_calls:
        return f"max_lm_calls reached: {lm_calls} LM calls (limit {plan.max_lm_calls})"
    if plan.budget_usd is not None and cost_usd >= plan.budget_usd:
        return f"budget_usd spent: ${cost_usd:.6f} (limit ${plan.budget_usd})"
    return None


def _as_number(subscore: Any) -> float:
    """A metric's value for one example as ``Evaluate`` sums it (a number or ``.score``)."""
    return float(getattr(subscore, "score", subscore))


def _write_held(env: TaskEnvironment, held: PendingRecords) -> None:
    """Store a candidate's held-back LM records (events and rows) in one transaction."""
    events, rows = held.events, held.lm_requests
    env.recorder.record(events, rows)
    held.discard(events, rows)


def _over_budget(plan: RunPlan, checkpoint: RunCheckpoint) -> str | None:
    return _budget_reason(plan, checkpoint.lm_calls, checkpoint.cost_usd)


class BudgetSpent(DspyqError):
    """The run's budget ran out while a candidate was being scored (its score is partial)."""


def _score_within_budget(
    env: TaskEnvironment,
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
            _write_held(env, held)
        reason = _budget_reason(plan, *_spent(env, run))
        if reason is not None:
            raise BudgetSpent(f"stopped after {start} of {len(devset)} examples: {reason}")
        chunk = devset[start : start + size]
        subscores += evaluate_candidate(
            program, chunk, metric=metric, num_threads=plan.num_threads
        ).subscores
    total = sum(_as_number(s) for s in subscores)
    score = round(100 * total / len(devset), 2) if devset else 0.0
    return CandidateScore(score=score, subscores=subscores)


def _save_best(
    env: TaskEnvironment, run: OptimizationRunRecord, plan: RunPlan, checkpoint: RunCheckpoint
) -> None:
    """Save the best program once per run (a redelivered step finds it saved)."""
    best = checkpoint.best
    if best is None or best.program is None or checkpoint.saved is not None:
        return
    programs = ProgramStore(env.engine)
    found = [r for r in programs.list(plan.run_name) if r.run_id == run.id]
    record = (
        found[0]
        if found
        else programs.save(
            plan.run_name, str(best.program["kind"]), best.program, best.score, run_id=run.id
        )
    )
    checkpoint.saved = {"name": record.name, "version": record.version}


def _finish(
    env: TaskEnvironment,
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
    _save_best(env, run, plan, checkpoint)
    best = None if checkpoint.best is None else checkpoint.best.score
    RunStore(env.engine).update(
        run.id,
        status=status,
        stop_reason=reason[:1024],
        checkpoint=checkpoint.model_dump(mode="json"),
        best_score=best,
        iterations=len(checkpoint.candidates),
    )
    env.emit(
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


def _score_round(
    run: OptimizationRunRecord,
    plan: RunPlan,
    round_index: int,
    candidates: list[Candidate] | None = None,
    trials: list[TrialJob] | None = None,
    built: list[CandidateOutcome] | None = None,
    failed: list[CandidateOutcome] | None = None,
) -> None:
    """Send a round's candidates to the LM's pool as a chord whose body is the next step;
    each candidate in :meth:`RunPlan.parts_per_candidate` tasks, one per devset slice.

    Few-shot rounds are their ``built`` programs (``failed``: those whose build failed,
    handed to the step as they are); a COPRO round is the ``candidates`` proposed for
    it; a MIPROv2 round is its ``trials``.
    """
    queue = lm_queue(split_model(plan.lm)[0])
    jobs: list[dict[str, Any]]
    if trials is not None:
        jobs = [{"seed": t.number, "trial": t.model_dump(mode="json")} for t in trials]
    elif candidates is not None:
        jobs = [{"seed": c.seed, "candidate": c.model_dump(mode="json"), "iteration": c.iteration}
                for c in candidates]  # fmt: skip
    elif built is not None:
        jobs = [{"seed": b.seed, "program": b.program, "iteration": b.iteration} for b in built]
    else:
        jobs = [{"seed": seed} for seed in plan.rounds()[round_index]]
    parts = plan.parts_per_candidate(len(jobs))
    jobs = [{**job, "parts": parts} for job in jobs]
    header = [
        signature(
            CANDIDATE_TASK,
            kwargs={"run_id": run.id, "round_index": round_index, **job, "part": part},
            queue=queue,
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


def _build_round(
    run: OptimizationRunRecord, plan: RunPlan, round_index: int, candidates: list[Candidate]
) -> None:
    """Build (bootstrap) a few-shot round's candidates on the LM's pool, one task per
    seed; their chord's body (``dspyq.optimize.fanout``) sends them to be scored.
    BootstrapFewShot's one candidate is bootstrapped in waves of windows instead."""
    if plan.optimizer == SINGLE_BOOTSTRAP:
        _bootstrap_wave(run, plan, round_index, 0)
        return
    header = [
        signature(
            BUILD_TASK,
            kwargs={
                "run_id": run.id,
                "seed": c.seed,
                "round_index": round_index,
                "iteration": c.iteration,
            },
            queue=lm_queue(split_model(plan.lm)[0]),
        )
        for c in candidates
    ]
    body = signature(
        FANOUT_TASK, kwargs={"run_id": run.id, "round_index": round_index}, queue=OPTIMIZE_QUEUE
    )
    chord(header, body).apply_async()


def _bootstrap_wave(
    run: OptimizationRunRecord, plan: RunPlan, round_index: int, start: int
) -> None:
    """Bootstrap the trainset from ``start`` in windows, a task each, on the LM's pool;
    their chord's body (``dspyq.optimize.bootstrapped``) walks the outcomes in order."""
    header = [
        signature(
            BOOTSTRAP_TASK,
            kwargs={"run_id": run.id, "start": a, "stop": b},
            queue=lm_queue(split_model(plan.lm)[0]),
        )
        for a, b in plan.bootstrap_windows(start)
    ]
    body = signature(
        BOOTSTRAPPED_TASK,
        kwargs={"run_id": run.id, "round_index": round_index, "start": start},
        queue=OPTIMIZE_QUEUE,
    )
    chord(header, body).apply_async()


def _dispatch(run: OptimizationRunRecord, plan: RunPlan, round_index: int) -> None:
    """Send round ``round_index``: COPRO first asks the LM's pool for its proposals,
    MIPROv2 for its demo sets and instructions (round 0 only)."""
    first = PREPARE_TASK if plan.optimizer == MIPRO else PROPOSE_TASK
    chain(
        signature(
            first,
            kwargs={"run_id": run.id, "round_index": round_index},
            queue=lm_queue(split_model(plan.teacher_lm or plan.lm)[0]),
        ),
        signature(
            FANOUT_TASK,
            kwargs={"run_id": run.id, "round_index": round_index},
            queue=OPTIMIZE_QUEUE,
        ),
    ).apply_async()


def advance(run_id: str, round_index: int | None, outcomes: list[dict[str, Any]]) -> None:
    """Merge round ``round_index`` (if not merged yet), then send the next round or finish."""
    env = task_environment()
    runs = RunStore(env.engine)
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
        env.emit(_event(run, "start", "optimization_start", optimizer=plan.optimizer))
    if round_index is not None and round_index == checkpoint.round:
        parsed = [CandidateOutcome.model_validate(o) for o in outcomes]
        _merge(env, run, plan, checkpoint, parsed)
        best = None if checkpoint.best is None else checkpoint.best.score
        if not runs.update(
            run_id,
            checkpoint=checkpoint.model_dump(mode="json"),
            best_score=best,
            iterations=len(checkpoint.candidates),
        ):
            return  # cancelled meanwhile
    stop_at = plan.settings.get("stop_at_score")
    best_score = None if checkpoint.best is None else checkpoint.best.score
    over = _over_budget(plan, checkpoint) if checkpoint.round > 0 else None
    if over is not None:
        _finish(env, run, plan, checkpoint, "budget_exhausted", over)
    elif plan.optimizer in STRATEGY_OPTIMIZERS:
        _next_round(env, run, plan, checkpoint)
    elif stop_at is not None and best_score is not None and best_score >= stop_at:
        _finish(env, run, plan, checkpoint, "succeeded", f"stop_at_score {stop_at} reached")
    elif plan.optimizer == MIPRO and checkpoint.search is not None:
        _next_search_round(env, run, plan, checkpoint)
    elif plan.optimizer != MIPRO and checkpoint.round >= plan.round_count():
        _finish(env, run, plan, checkpoint, "succeeded", "every candidate evaluated")
    elif checkpoint.dispatched < checkpoint.round:
        _dispatch(run, plan, checkpoint.round)
        checkpoint.dispatched = checkpoint.round
        runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json"))


def _next_round(
    env: TaskEnvironment, run: OptimizationRunRecord, plan: RunPlan, checkpoint: RunCheckpoint
) -> None:
    """Send the round the run's strategy asks for next, or finish when it asks nothing.
    (The round depends on the checkpointed state only: a redelivered step asks the same.)"""
    strategy, state = _strategy_state(env, plan, checkpoint)
    preparing = strategy.needs_preparation(state)
    candidates = [] if preparing else strategy.next_round(state, plan.candidates_per_round)
    if not preparing and not candidates:
        _finish(env, run, plan, checkpoint, "succeeded", strategy.stop_reason(state))
        return
    if checkpoint.dispatched >= checkpoint.round:
        return  # a redelivered step: this round is out already
    if preparing:
        _dispatch(run, plan, checkpoint.round)
    elif plan.optimizer == SINGLE_BOOTSTRAP:
        _bootstrap_wave(run, plan, checkpoint.round, 0)
    elif plan.optimizer == INSTRUCTION_SEARCH:
        _score_round(run, plan, checkpoint.round, candidates=candidates)
    else:
        _build_round(run, plan, checkpoint.round, candidates)
    checkpoint.dispatched = checkpoint.round
    checkpoint.state = state.model_dump(mode="json")
    RunStore(env.engine).update(run.id, checkpoint=checkpoint.model_dump(mode="json"))


def _next_search_round(
    env: TaskEnvironment, run: OptimizationRunRecord, plan: RunPlan, checkpoint: RunCheckpoint
) -> None:
    """Send MIPROv2's next batch of trials, or finish when its search is over.

    The trials and the search counters they advanced are stored before the round is sent:
    a coordinator that dies after sending it leaves a step that is delivered again, which
    must send the same trials (at worst twice; the first round merged wins) rather than
    plan again from counters that never counted them.
    """
    if checkpoint.dispatched >= checkpoint.round:
        return  # a redelivered step: this round is out already
    runs = RunStore(env.engine)
    planned = checkpoint.planned
    if planned is not None and planned.get("round") == checkpoint.round:
        trials = [TrialJob.model_validate(t) for t in planned["trials"]]
    else:
        search = SearchState.model_validate(checkpoint.search)
        trials = next_trials(
            search, int(plan.settings["seed"]), checkpoint.round, plan.candidates_per_round
        )
        if not trials:
            _finish(env, run, plan, checkpoint, "succeeded", "every trial evaluated")
            return
        checkpoint.search = search.model_dump(mode="json")
        checkpoint.planned = {
            "round": checkpoint.round,
            "trials": [t.model_dump(mode="json") for t in trials],
        }
        if not runs.update(run.id, checkpoint=checkpoint.model_dump(mode="json")):
            return  # ended (cancelled) meanwhile
    _score_round(run, plan, checkpoint.round, trials=trials)
    checkpoint.dispatched = checkpoint.round
    runs.update(run.id, checkpoint=checkpoint.model_dump(mode="json"))


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
    """COPRO's instruction proposals for a round, from the prompt model (teacher_lm or lm).

    Returns ``{"candidates": [...]}`` or ``{"error": ...}``; never raises, so the chain
    always reaches the coordinator.
    """
    env = task_environment()
    run = RunStore(env.engine).get(run_id)
    if run is None or run.status in TERMINAL_RUN_STATUSES:
        return {"error": {"type": "JobCancelledError", "message": "the run has ended"}}
    plan = RunPlan.model_validate(run.config)
    checkpoint = RunCheckpoint.model_validate(run.checkpoint or {})
    try:
        prompt_lm = LM(plan.teacher_lm or plan.lm, http_client=env.http, **plan.lm_kwargs)
        strategy = strategy_for(plan, prompt_lm=prompt_lm)
        bench = _bench(env, plan)
        state = (
            strategy.start(bench) if checkpoint.state is None else strategy.load(checkpoint.state)
        )
        task_id = str(self.request.id)
        with context(correlation_id=run.correlation_id, parent_id=run.id, task_id=task_id):
            state = strategy.prepare(state, bench)
    except (Ignore, Retry, Reject):
        raise
    except DspyqError as exc:
        return {"error": exc.to_dict()}
    except Exception as exc:
        return {"error": {"type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}"}}
    return {"state": state.model_dump(mode="json")}


def _valsets(plan: RunPlan) -> tuple[list[Any], list[Any] | None]:
    trainset = [e.example() for e in plan.trainset]
    valset = [e.example() for e in plan.valset] if plan.valset_given else None
    return trainset, valset


@shared_task(name=PREPARE_TASK, bind=True, max_retries=None)
def optimize_prepare(self: Task, run_id: str, round_index: int) -> dict[str, Any]:
    """MIPROv2's demo sets and instruction proposals (its steps 1 and 2).

    Returns ``{"search": ...}`` (a :class:`SearchState`) or ``{"error": ...}``; never
    raises, so the chain always reaches the coordinator.
    """
    env = task_environment()
    run = RunStore(env.engine).get(run_id)
    if run is None or run.status in TERMINAL_RUN_STATUSES:
        return {"error": {"type": "JobCancelledError", "message": "the run has ended"}}
    plan = RunPlan.model_validate(run.config)
    try:
        metric = resolve_metric(plan.metric, env.settings.allowed_imports)
        student = env.programs.build(plan.program)
        task_lm = LM(plan.lm, http_client=env.http, **plan.lm_kwargs)
        teacher = None if plan.teacher_lm is None else LM(plan.teacher_lm, http_client=env.http)
        trainset, valset = _valsets(plan)
        task_id = str(self.request.id)
        with context(correlation_id=run.correlation_id, parent_id=run.id, task_id=task_id):
            search = prepare_search(
                plan.settings,
                student,
                metric,
                trainset,
                valset,
                task_lm=task_lm,
                prompt_lm=teacher or task_lm,
                teacher_lm=teacher,
            )
    except (Ignore, Retry, Reject):
        raise
    except DspyqError as exc:
        return {"error": exc.to_dict()}
    except Exception as exc:
        return {"error": {"type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}"}}
    return {"search": search.model_dump(mode="json")}


@shared_task(name=FANOUT_TASK, bind=True, max_retries=None)
def optimize_fanout(
    self: Task, proposed: dict[str, Any] | list[dict[str, Any]], run_id: str, round_index: int
) -> None:
    """Score a COPRO round's proposals, a few-shot round's built candidates (a list), or
    MIPROv2's first trials once its search is prepared (once, however often this is
    delivered)."""
    env = task_environment()
    runs = RunStore(env.engine)
    run = runs.get(run_id)
    if run is None or run.status in TERMINAL_RUN_STATUSES:
        return
    plan = RunPlan.model_validate(run.config)
    checkpoint = RunCheckpoint.model_validate(run.checkpoint or {})
    if checkpoint.fanned_out >= round_index:
        return
    if isinstance(proposed, list):
        built = [CandidateOutcome.model_validate(b) for b in proposed]
        ok = [b for b in built if b.error is None and b.program is not None]
        failed = [b for b in built if b.error is not None or b.program is None]
        _score_round(run, plan, round_index, built=ok, failed=failed)
        checkpoint.fanned_out = round_index
        runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json"))
        return
    if plan.optimizer == MIPRO:
        _fan_out_search(env, run, plan, checkpoint, proposed, round_index)
        return
    candidates: list[Candidate] = []
    if proposed.get("state") is not None:
        strategy = strategy_for(plan)
        state = strategy.load(proposed["state"])
        candidates = strategy.next_round(state, plan.candidates_per_round)
        checkpoint.state = state.model_dump(mode="json")
    if not candidates:
        error = proposed.get("error") or {"message": "the prompt model proposed nothing"}
        _finish(
            env, run, plan, checkpoint, "failed",
            f"proposals for round {round_index} failed: {error.get('message')}",
        )  # fmt: skip
        return
    _score_round(run, plan, round_index, candidates)
    checkpoint.fanned_out = round_index
    runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json"))


def _bootstrapper(env: TaskEnvironment, plan: RunPlan) -> BootstrapFewShot:
    """The run's BootstrapFewShot, with its threads and teacher LM, as ``build_candidate``
    makes it."""
    settings = dict(plan.settings)
    if settings.get("num_threads") is None:
        settings["num_threads"] = plan.num_threads
    teacher = {} if plan.teacher_lm is None else {"lm": LM(plan.teacher_lm, http_client=env.http)}
    metric = resolve_metric(plan.metric, env.settings.allowed_imports)
    return BootstrapFewShot(metric=metric, teacher_settings=teacher, **settings)


@shared_task(name=BOOTSTRAP_TASK, bind=True, max_retries=None)
def optimize_bootstrap(self: Task, run_id: str, start: int, stop: int) -> dict[str, Any]:
    """Run BootstrapFewShot's teacher on ``trainset[start:stop]``.

    Returns ``{"outcomes": {index: [BootstrapOutcome, ...]}}`` or ``{"error": ...}``;
    never raises (the chord must fire).
    """
    env = task_environment()
    task_id = str(self.request.id)
    run = RunStore(env.engine).get(run_id)
    if run is None or run.status in TERMINAL_RUN_STATUSES:
        return {"error": {"type": "JobCancelledError", "message": "the run has ended"}}
    plan = RunPlan.model_validate(run.config)
    with pending_records() as held:
        try:
            reason = _budget_reason(plan, *_spent(env, run))
            if reason is not None:
                raise BudgetSpent(f"not started: {reason}")
            student = env.programs.build(plan.program)
            lm = LM(plan.lm, http_client=env.http, **plan.lm_kwargs)
            trainset, _ = _valsets(plan)
            with context(
                lm=lm, correlation_id=run.correlation_id, parent_id=run.id, task_id=task_id
            ):
                found = _bootstrapper(env, plan).bootstrap_span(
                    student, trainset=trainset, start=start, stop=stop
                )
            return {
                "outcomes": {
                    str(i): [o.model_dump(mode="json") for o in rounds]
                    for i, rounds in found.items()
                }
            }
        except (Ignore, Retry, Reject):
            raise
        except DspyqError as exc:
            return {"error": exc.to_dict()}
        except Exception as exc:
            return {
                "error": {"type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}"}
            }
        finally:
            if held:
                try:
                    _write_held(env, held)
                except Exception:
                    logger.exception("could not record the LM calls of bootstrap task %s", task_id)


@shared_task(name=BOOTSTRAPPED_TASK, bind=True, max_retries=None)
def optimize_bootstrapped(
    self: Task, results: list[dict[str, Any]], run_id: str, round_index: int, start: int
) -> None:
    """A wave of bootstrapping is done: walk every outcome so far in trainset order
    (DSPy's walk, hence its demos) and score the compiled candidate, or bootstrap the
    next wave when the walk needs examples not run yet (once per wave, however often
    this is delivered)."""
    env = task_environment()
    runs = RunStore(env.engine)
    run = runs.get(run_id)
    if run is None or run.status in TERMINAL_RUN_STATUSES:
        return
    plan = RunPlan.model_validate(run.config)
    checkpoint = RunCheckpoint.model_validate(run.checkpoint or {})
    state = checkpoint.bootstrap or {"outcomes": {}, "next": 0}
    if checkpoint.fanned_out >= round_index or int(state["next"]) > start:
        return
    outcome = CandidateOutcome(
        iteration=plan.iteration_of(0, round_index), seed=0, round=round_index
    )
    for result in results:
        state["outcomes"].update(result.get("outcomes") or {})
    known = {
        int(i): [BootstrapOutcome.model_validate(o) for o in rounds]
        for i, rounds in state["outcomes"].items()
    }
    compiled = None
    try:
        compiled = _bootstrapper(env, plan).compile_from_outcomes(
            env.programs.build(plan.program), trainset=_valsets(plan)[0], outcomes=known
        )
    except DspyqError as exc:
        outcome.error = exc.to_dict()
    except Exception as exc:
        outcome.error = {"type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}"}
    # A window that failed (e.g. the budget ran out) matters only if the walk needs it.
    errors = [r["error"] for r in results if r.get("error") is not None]
    if compiled is None and outcome.error is None and errors:
        outcome.error = errors[0]
    if compiled is None and outcome.error is None:
        following = min(set(range(len(plan.trainset))) - set(known))
        _bootstrap_wave(run, plan, round_index, following)
        checkpoint.bootstrap = {**state, "next": following}
        runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json"))
        return
    if compiled is not None:
        outcome.program = program_to_spec(compiled).model_dump(mode="json")
        outcome.instruction = first_instruction(compiled)
        _score_round(run, plan, round_index, built=[outcome])
    else:
        _score_round(run, plan, round_index, built=[], failed=[outcome])
    checkpoint.bootstrap = None  # its outcomes are in the candidate now
    checkpoint.fanned_out = round_index
    runs.update(run_id, checkpoint=checkpoint.model_dump(mode="json"))


def _fan_out_search(
    env: TaskEnvironment,
    run: OptimizationRunRecord,
    plan: RunPlan,
    checkpoint: RunCheckpoint,
    prepared: dict[str, Any],
    round_index: int,
) -> None:
    if prepared.get("search") is None:
        error = prepared.get("error") or {"message": "the search could not be prepared"}
        _finish(env, run, plan, checkpoint, "failed", f"MIPROv2 preparation failed: "
                f"{error.get('message')}")  # fmt: skip
        return
    search = SearchState.model_validate(prepared["search"])
    trials = next_trials(search, int(plan.settings["seed"]), round_index, plan.candidates_per_round)
    checkpoint.search = search.model_dump(mode="json")
    # The trials read the search from the checkpoint: store it before they can start.
    RunStore(env.engine).update(run.id, checkpoint=checkpoint.model_dump(mode="json"))
    _score_round(run, plan, round_index, trials=trials)
    checkpoint.fanned_out = round_index
    RunStore(env.engine).update(run.id, checkpoint=checkpoint.model_dump(mode="json"))


@shared_task(name=CANDIDATE_TASK, bind=True, max_retries=None)
def optimize_candidate(
    self: Task,
    run_id: str,
    seed: int,
    round_index: int,
    candidate: dict[str, Any] | None = None,
    trial: dict[str, Any] | None = None,
    program: dict[str, Any] | None = None,
    part: int = 0,
    parts: int = 1,
    iteration: int | None = None,
) -> dict[str, Any]:
    """Score one candidate (``program``, already built, or built here) on part ``part``
    of ``parts`` of its devset; never raises (the chord must fire).

    Returns a :class:`CandidateOutcome` dict, with the error when the candidate failed.
    """
    job = CandidateJob(
        candidate=candidate, trial=trial, program=program, part=part, parts=parts,
        iteration=iteration,
    )  # fmt: skip
    return _candidate_task(str(self.request.id), run_id, seed, round_index, job)


@shared_task(name=BUILD_TASK, bind=True, max_retries=None)
def optimize_build(
    self: Task, run_id: str, seed: int, round_index: int, iteration: int | None = None
) -> dict[str, Any]:
    """Build (bootstrap) a few-shot candidate without scoring it; never raises (the chord
    must fire). Returns a :class:`CandidateOutcome` dict with its program or its error."""
    job = CandidateJob(build_only=True, iteration=iteration)
    return _candidate_task(str(self.request.id), run_id, seed, round_index, job)


class CandidateJob(BaseModel):
    """What one candidate task does: which candidate, and which part of its work."""

    candidate: dict[str, Any] | None = None
    trial: dict[str, Any] | None = None
    program: dict[str, Any] | None = None
    part: int = 0
    parts: int = 1
    build_only: bool = False
    iteration: int | None = None


def _candidate_task(
    task_id: str, run_id: str, seed: int, round_index: int, job: CandidateJob
) -> dict[str, Any]:
    env = task_environment()
    run = RunStore(env.engine).get(run_id)
    if run is None:
        return CandidateOutcome(
            iteration=0, seed=seed, round=round_index, task_id=task_id,
            error={"type": "StateError", "message": f"no optimization run {run_id}"},
        ).model_dump(mode="json")  # fmt: skip
    plan = RunPlan.model_validate(run.config)
    if job.iteration is not None:
        iteration = job.iteration
    elif job.trial is not None:
        iteration = seed
    else:
        iteration = plan.iteration_of(seed, round_index)
    outcome = CandidateOutcome(
        iteration=iteration,
        seed=seed,
        round=round_index,
        task_id=task_id,
        part=job.part,
        parts=job.parts,
    )
    if run.status in TERMINAL_RUN_STATUSES:
        outcome.error = {"type": "JobCancelledError", "message": f"run {run.status}"}
        return outcome.model_dump(mode="json")
    # A candidate makes hundreds of LM calls: their events and rows are held back and
    # written a chunk (or the whole candidate) at a time, not two transactions per call.
    with pending_records() as held:
        try:
            _run_candidate(env, run, plan, seed, task_id, outcome, job)
        finally:
            if held:
                try:
                    _write_held(env, held)
                except Exception:
                    logger.exception("could not record the LM calls of candidate %s", task_id)
    if outcome.error is not None:
        logger.warning(
            "candidate %d of run %s failed: %s", outcome.iteration, run_id, outcome.error
        )
    return outcome.model_dump(mode="json")


def _run_candidate(
    env: TaskEnvironment,
    run: OptimizationRunRecord,
    plan: RunPlan,
    seed: int,
    task_id: str,
    outcome: CandidateOutcome,
    job: CandidateJob,
) -> None:
    """Build and score (part of) one candidate into ``outcome`` (its error too; never
    raises)."""
    try:
        reason = _budget_reason(plan, *_spent(env, run))
        if reason is not None:
            raise BudgetSpent(f"not started: {reason}")
        metric = resolve_metric(plan.metric, env.settings.allowed_imports)
        student = env.programs.build(plan.program)
        lm = LM(plan.lm, http_client=env.http, **plan.lm_kwargs)
        teacher = None if plan.teacher_lm is None else LM(plan.teacher_lm, http_client=env.http)
        trainset, valset = _valsets(plan)
        with context(lm=lm, correlation_id=run.correlation_id, parent_id=run.id, task_id=task_id):
            if job.trial is not None:
                program, devset = _trial_program(run, plan, student, TrialJob(**job.trial), outcome)
            elif job.candidate is not None:
                candidate = Candidate.model_validate(job.candidate)
                bench = Bench(student, trainset, valset)
                program = strategy_for(plan, metric, teacher).build(candidate, bench)
                devset = strategy_for(plan).devset(candidate, bench)
            elif job.program is not None:
                program = env.programs.build(job.program)
                devset = valset or trainset
            else:
                strategy = strategy_for(plan, metric, teacher)
                candidate = Candidate(iteration=outcome.iteration, seed=seed)
                program = strategy.build(candidate, Bench(student, trainset, valset))
                devset = valset or trainset
            if not job.build_only:
                devset = part_of(devset, job.part, job.parts)
                scored = _score_within_budget(env, run, plan, program, devset, metric)
                outcome.score = scored.score
                outcome.score_sum = sum(_as_number(s) for s in scored.subscores)
                outcome.examples = len(devset)
        # A minibatch score never becomes the best program; parts past the first need
        # not carry the program the first one does.
        if outcome.full_eval and job.part == 0:
            outcome.program = program_to_spec(program).model_dump(mode="json")
        outcome.instruction = first_instruction(program)
    except (Ignore, Retry, Reject):
        raise
    except DspyqError as exc:
        outcome.error = exc.to_dict()
    except Exception as exc:  # a user's metric or module raised: this candidate's error
        outcome.error = {"type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}"}


def _trial_program(
    run: OptimizationRunRecord,
    plan: RunPlan,
    student: Any,
    trial: TrialJob,
    outcome: CandidateOutcome,
) -> tuple[Any, list[Any]]:
    """A MIPROv2 trial's program (its combination applied) and the examples it is scored on."""
    checkpoint = RunCheckpoint.model_validate(run.checkpoint or {})
    if checkpoint.search is None:
        raise DspyqError(f"optimization run {run.id} has no prepared search")
    search = SearchState.model_validate(checkpoint.search)
    trainset, valset = _valsets(plan)
    _, val = MIPROv2._split(trainset, valset)
    chosen = [val[i] for i in search.val_indices]
    outcome.params = dict(trial.params)
    outcome.full_eval = trial.indices is None
    devset = chosen if trial.indices is None else [chosen[i] for i in trial.indices]
    return search.program(student, trial.params), devset
