"""The thin client: validate at the edge, enqueue, and read results and traces back.

It never runs a module and never holds an API key: it turns a program into JSON,
sends it to the queue of the program's provider pool, and hands back a :class:`Job`.

Importing it stays cheap: the store, the optimizers and the progress bars are loaded by
the methods that need them, and the SQL engine is made when results are first read.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspyq.api_client.job import Job
from dspyq.api_client.production import ProductionLoopMethods
from dspyq.api_client.submit import build_request, program_lm, send, send_many
from dspyq.settings import Settings, get_settings
from dspyq.tasks.app import make_app
from dspyq.tasks.protocol import DEFAULT_CANDIDATES_PER_ROUND

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.engine import Engine

    from dspyq.api_client.pools import PoolStatus
    from dspyq.api_client.programs import ProgramRegistry
    from dspyq.api_client.references import References
    from dspyq.api_client.runs import Run
    from dspyq.api_client.stream import AsyncStream, Stream
    from dspyq.core.example import Example
    from dspyq.core.module import Module
    from dspyq.events import Event
    from dspyq.optimize.evaluate import EvaluationResult
    from dspyq.optimize.teleprompter import Teleprompter
    from dspyq.store.models import (
        EvaluationRecord,
        EvaluationRowRecord,
        ExecutionRecord,
        ProgramRecord,
    )
    from dspyq.tasks.metrics import Metric


class Client(ProductionLoopMethods):
    """Submit programs to dspyq's worker pools: ``dspyq.Client().submit(program, **inputs)``."""

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        self.settings = settings or get_settings()
        self.app = app or make_app(self.settings)
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._references: References | None = None  # saved programs by reference

    # --- submitting -------------------------------------------------------------------

    def submit(
        self,
        program: Module | str,
        lm: str | None = None,
        *,
        fallbacks: Sequence[str] = (),
        lm_kwargs: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        privacy: str | None = None,
        **inputs: Any,
    ) -> Job:
        """Validate and enqueue one execution of ``program`` on ``lm``'s provider pool.

        ``program`` is a module, or a saved program's reference: ``"qa@production"``
        (the version the alias points to when the job starts), ``"qa:3"``, ``"qa"``
        (the latest version). It works the same in ``map``, ``stream``, ``evaluate``
        and ``optimize``. ``privacy``: this job's level at least (strictest wins)."""
        args = (self, program, lm, fallbacks, lm_kwargs, correlation_id, inputs)
        request, task_name = build_request(*args, spec=None, privacy=privacy)
        return send(self, task_name, request)

    def map(
        self,
        program: Module | str,
        inputs: Iterable[Mapping[str, Any]],
        lm: str | None = None,
        *,
        fallbacks: Sequence[str] = (),
        lm_kwargs: Mapping[str, Any] | None = None,
        privacy: str | None = None,
    ) -> list[Job]:
        """Enqueue one execution per inputs dict; all are validated before any is sent.
        They travel in batches of up to ``DSPYQ_MAP_BATCH_SIZE`` per message (see
        :mod:`dspyq.tasks.batch`); each still has its own :class:`Job`."""
        return send_many(self, program, inputs, lm, fallbacks, lm_kwargs, privacy)

    async def asubmit(self, program: Module | str, lm: str | None = None, **kwargs: Any) -> Job:
        """Async twin of :meth:`submit` (publishing runs in a thread)."""
        return await asyncio.to_thread(self.submit, program, lm, **kwargs)

    async def amap(
        self,
        program: Module | str,
        inputs: Iterable[Mapping[str, Any]],
        lm: str | None = None,
        **kw: Any,
    ) -> list[Job]:
        """Async twin of :meth:`map`."""
        return await asyncio.to_thread(self.map, program, list(inputs), lm, **kw)

    def stream(
        self,
        program: Module | str,
        lm: str | None = None,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Stream:
        """Submit like :meth:`submit` and follow the job's LM text as the worker receives it.

        ``for item in client.stream(program, lm=..., **inputs)`` yields
        :class:`~dspyq.api_client.stream.StreamChunk` items (``.text``), then the Prediction.
        """
        from dspyq.api_client.stream import Stream, start_stream

        return Stream(self, start_stream(self, program, lm, **kwargs), timeout)

    def astream(
        self,
        program: Module | str,
        lm: str | None = None,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> AsyncStream:
        """Async twin of :meth:`stream`: ``async for item in client.astream(...)``."""
        from dspyq.api_client.stream import AsyncStream, start_stream

        return AsyncStream(self, lambda: start_stream(self, program, lm, **kwargs), timeout)

    def job(self, task_id: str, correlation_id: str | None = None) -> Job:
        """A handle on an already submitted job (e.g. from another process)."""
        return Job(self, task_id, correlation_id or task_id)

    # --- evaluating -----------------------------------------------------------------------

    def evaluate(
        self,
        program: Module | str,
        devset: Sequence[Example],
        metric: Metric | str,
        lm: str | None = None,
        *,
        fallbacks: Sequence[str] = (),
        lm_kwargs: Mapping[str, Any] | None = None,
        display_progress: bool = True,
        timeout: float | None = None,
        failure_score: float = 0.0,
        max_errors: int | None = None,
    ) -> EvaluationResult:
        """Score ``program`` on ``devset`` across the provider pool, like ``dspyq.Evaluate``.

        ``metric`` is a module-level function (or its ``"pkg.mod:func"`` path): workers
        import it, so lambdas and closures are refused here, before anything is enqueued.
        Returns ``.score`` (percentage) and ``.results`` rows in devset order, plus the
        ``evaluation_id`` of the ``evaluations`` row recorded in SQL. A reference is
        resolved once: the whole devset runs on the version it names at the start.
        """
        from dspyq.api_client.evaluation import evaluate_on_pool

        return evaluate_on_pool(
            self,
            program,
            devset,
            metric=metric,
            lm=lm,
            fallbacks=fallbacks,
            lm_kwargs=dict(lm_kwargs or {}),
            display_progress=display_progress,
            timeout=timeout,
            failure_score=failure_score,
            max_errors=max_errors,
        )

    def evaluation(self, evaluation_id: str) -> EvaluationRecord | None:
        """The recorded evaluation (score, n, errors, status), or None."""
        from dspyq.store.evaluations import EvaluationStore

        return EvaluationStore(self.engine).get(evaluation_id)

    def evaluation_rows(self, evaluation_id: str) -> list[EvaluationRowRecord]:
        """The per-example rows of an evaluation, in devset order."""
        from dspyq.store.evaluations import EvaluationStore

        return EvaluationStore(self.engine).rows(evaluation_id)

    # --- optimization runs -------------------------------------------------------------

    def optimize(
        self,
        optimizer: Teleprompter,
        program: Module | str,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        lm: str | None = None,
        teacher_lm: str | None = None,
        metric: Metric | str | None = None,
        budget_usd: float | None = None,
        max_lm_calls: int | None = None,
        run_name: str | None = None,
        candidates_per_round: int = DEFAULT_CANDIDATES_PER_ROUND,
        lm_kwargs: Mapping[str, Any] | None = None,
        compile_options: Mapping[str, Any] | None = None,
    ) -> Run:
        """Run ``optimizer`` on ``program`` on the queue; returns a :class:`Run` at once.

        A coordinator on ``dspyq.optimize`` fans each round of candidates out to ``lm``'s
        provider pool and checkpoints after it; the best program is saved in the registry
        as ``run_name`` (default ``run-<id>``). The optimizer's metric (or ``metric``)
        must be importable by workers. ``budget_usd`` / ``max_lm_calls`` stop the run,
        keeping its best program, once its LM calls spent that much. ``compile_options``
        are MIPROv2's ``compile`` arguments (``num_trials``, ``minibatch_size``, ...);
        ``candidates_per_round`` is how many candidates (MIPROv2: trials) a round scores.
        """
        from dspyq.api_client.runs import start_run

        if isinstance(program, str):  # the version the reference names now
            from dspyq.api_client.references import references_of

            program = references_of(self).lookup(program).program.deepcopy()
        return start_run(
            self,
            optimizer,
            program,
            trainset=trainset,
            valset=valset,
            lm=lm or program_lm(self, program),
            teacher_lm=teacher_lm,
            metric=metric,
            budget_usd=budget_usd,
            max_lm_calls=max_lm_calls,
            run_name=run_name,
            candidates_per_round=candidates_per_round,
            lm_kwargs=dict(lm_kwargs or {}),
            compile_options=dict(compile_options or {}),
        )

    def run(self, run_id: str) -> Run:
        """A handle on an optimization run started earlier (e.g. from another process)."""
        from dspyq.api_client.runs import Run

        return Run(self, run_id)

    # --- saved programs --------------------------------------------------------------------

    @property
    def programs(self) -> ProgramRegistry:
        """The SQL registry of named, versioned programs."""
        from dspyq.api_client.programs import ProgramRegistry

        return ProgramRegistry(self.engine, self.settings.allowed_imports)

    def save_program(
        self, name: str, program: Module, score: float | None = None, run_id: str | None = None
    ) -> int:
        """Save ``program`` as the next version of ``name`` (1, 2, ...); returns the version."""
        return self.programs.save(name, program, score=score, run_id=run_id)

    def list_programs(self, name: str | None = None) -> list[ProgramRecord]:
        """Saved program versions (of ``name``, or all) with their scores and runs."""
        return self.programs.list(name)

    def load_program(self, name: str, version: int | None = None) -> Module:
        """The program saved as ``name``: the latest version unless ``version`` is given."""
        return self.programs.load(name, version)

    def export_program(self, name: str, version: int | None, path: str | Path) -> Path:
        """Write a saved version as DSPy's JSON state (what ``program.save`` writes)."""
        return self.programs.export(name, version, path)

    def import_program(self, name: str, program_template: Module, path: str | Path) -> int:
        """Load DSPy's JSON state from ``path`` into ``program_template``'s structure and save
        it as a new version of ``name``; returns that version."""
        return self.programs.import_state(name, program_template, path)

    # --- reading back -------------------------------------------------------------------

    def events(self, correlation_id: str) -> list[Event]:
        """The recorded trace of a job (every hop and LM call), oldest first."""
        from dspyq.store.events import EventStore

        return EventStore(self.engine).by_correlation(correlation_id)

    def executions(self, correlation_id: str) -> list[ExecutionRecord]:
        """The execution rows of a job (one per hop for multi-hop programs)."""
        from dspyq.store.executions import ExecutionStore

        return ExecutionStore(self.engine).list(correlation_id=correlation_id)

    def recorded_error(self, task_id: str) -> dict[str, Any] | None:
        """The error recorded for a failed execution, if the store has it."""
        from dspyq.store.executions import ExecutionStore

        try:
            record = ExecutionStore(self.engine).get(task_id)
        except Exception:  # the store is optional for results: fall back to Celery's error
            return None
        return record.error if record is not None and record.error else None

    def pools(self, window_minutes: float = 15.0, timeout: float = 1.0) -> list[PoolStatus]:
        """Every pool's live workers, queue depth, breaker, rate-limit use and recent
        error rate (``dspyq pools``); workers get ``timeout`` seconds to answer."""
        from dspyq.api_client.pools import pool_statuses

        return pool_statuses(
            self.settings, self.app, self.engine, window_minutes=window_minutes, timeout=timeout
        )

    @property
    def engine(self) -> Engine:
        with self._engine_lock:
            if self._engine is None:
                from dspyq.store.engine import init_db, make_engine

                self._engine = make_engine(self.settings.database_url)
                init_db(self._engine)
            return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self.app.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
