"""The thin client: validate at the edge, enqueue, and read results and traces back.

It never runs a module and never holds an API key: it turns a program into JSON,
sends it to the queue of the program's provider pool, and hands back a :class:`Job`.
"""

from __future__ import annotations

import asyncio
import reprlib
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy.engine import Engine

from dspyq.api_client.evaluation import evaluate_on_pool
from dspyq.api_client.job import Job
from dspyq.api_client.pools import PoolStatus, pool_statuses
from dspyq.api_client.programs import ProgramRegistry
from dspyq.api_client.runs import DEFAULT_CANDIDATES_PER_ROUND, Run, start_run
from dspyq.api_client.stream import AsyncStream, Stream, start_stream
from dspyq.api_client.validation import validate_input_json, validate_program_inputs
from dspyq.core.context import current
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.multihop import MultiHopQA
from dspyq.core.program import program_to_spec
from dspyq.errors import ConfigurationError, InputError, new_correlation_id
from dspyq.events import Event
from dspyq.lm.lm import split_model
from dspyq.optimize.evaluate import EvaluationResult
from dspyq.optimize.teleprompter import Teleprompter
from dspyq.settings import Settings, get_settings
from dspyq.store import EventStore, ExecutionRecord, ExecutionStore, init_db, make_engine
from dspyq.store.evaluations import EvaluationStore
from dspyq.store.models import EvaluationRecord, EvaluationRowRecord, ProgramRecord
from dspyq.tasks.app import lm_queue, make_app
from dspyq.tasks.batch import BATCH_TASK, JOBS_HEADER, BatchItem, batch_message, batch_size
from dspyq.tasks.execute import EXECUTE_TASK
from dspyq.tasks.messages import ExecutionRequest
from dspyq.tasks.metrics import Metric
from dspyq.tasks.multihop import MULTIHOP_TASK
from dspyq.telemetry.tracing import submit_span


class Client:
    """Submit programs to dspyq's worker pools: ``dspyq.Client().submit(program, **inputs)``."""

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        self.settings = settings or get_settings()
        self.app = app or make_app(self.settings)
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    # --- submitting -------------------------------------------------------------------

    def submit(
        self,
        program: Module,
        lm: str | None = None,
        *,
        fallbacks: Sequence[str] = (),
        lm_kwargs: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        **inputs: Any,
    ) -> Job:
        """Validate and enqueue one execution of ``program`` on ``lm``'s provider pool."""
        request, task_name = self._request(
            program, lm, fallbacks, lm_kwargs, correlation_id, inputs, spec=None
        )
        return self._send(task_name, request)

    def map(
        self,
        program: Module,
        inputs: Iterable[Mapping[str, Any]],
        lm: str | None = None,
        *,
        fallbacks: Sequence[str] = (),
        lm_kwargs: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        """Enqueue one execution per inputs dict; all are validated before any is sent.

        Jobs travel in batches of up to ``DSPYQ_MAP_BATCH_SIZE`` per message (see
        :mod:`dspyq.tasks.batch`); each still has its own :class:`Job`.
        """
        spec = program_to_spec(program).model_dump(mode="json")
        prepared = [
            self._request(program, lm, fallbacks, lm_kwargs, None, dict(item), spec=spec)
            for item in inputs
        ]
        with self.app.producer_or_acquire() as producer:
            if any(name != EXECUTE_TASK for _, name in prepared):
                return [self._send(name, request, producer=producer) for request, name in prepared]
            requests = [request for request, _ in prepared]
            size = batch_size(len(requests), self.settings.map_batch_size)
            return [
                job
                for start in range(0, len(requests), size)
                for job in self._send_batch(requests[start : start + size], producer)
            ]

    async def asubmit(self, program: Module, lm: str | None = None, **kwargs: Any) -> Job:
        """Async twin of :meth:`submit` (publishing runs in a thread)."""
        return await asyncio.to_thread(self.submit, program, lm, **kwargs)

    async def amap(
        self, program: Module, inputs: Iterable[Mapping[str, Any]], lm: str | None = None, **kw: Any
    ) -> list[Job]:
        """Async twin of :meth:`map`."""
        return await asyncio.to_thread(self.map, program, list(inputs), lm, **kw)

    def stream(
        self, program: Module, lm: str | None = None, *, timeout: float | None = None, **kwargs: Any
    ) -> Stream:
        """Submit like :meth:`submit` and follow the job's LM text as the worker receives it.

        ``for item in client.stream(program, lm=..., **inputs)`` yields
        :class:`~dspyq.api_client.stream.StreamChunk` items (``.text``), then the Prediction.
        """
        return Stream(self, start_stream(self, program, lm, **kwargs), timeout)

    def astream(
        self, program: Module, lm: str | None = None, *, timeout: float | None = None, **kwargs: Any
    ) -> AsyncStream:
        """Async twin of :meth:`stream`: ``async for item in client.astream(...)``."""
        return AsyncStream(self, lambda: start_stream(self, program, lm, **kwargs), timeout)

    def job(self, task_id: str, correlation_id: str | None = None) -> Job:
        """A handle on an already submitted job (e.g. from another process)."""
        return Job(self, task_id, correlation_id or task_id)

    # --- evaluating -----------------------------------------------------------------------

    def evaluate(
        self,
        program: Module,
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
        ``evaluation_id`` of the ``evaluations`` row recorded in SQL.
        """
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
        return EvaluationStore(self.engine).get(evaluation_id)

    def evaluation_rows(self, evaluation_id: str) -> list[EvaluationRowRecord]:
        """The per-example rows of an evaluation, in devset order."""
        return EvaluationStore(self.engine).rows(evaluation_id)

    # --- optimization runs -------------------------------------------------------------

    def optimize(
        self,
        optimizer: Teleprompter,
        program: Module,
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
        return start_run(
            self,
            optimizer,
            program,
            trainset=trainset,
            valset=valset,
            lm=lm or self._program_lm(program),
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
        return Run(self, run_id)

    # --- saved programs --------------------------------------------------------------------

    @property
    def programs(self) -> ProgramRegistry:
        """The SQL registry of named, versioned programs."""
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
        return EventStore(self.engine).by_correlation(correlation_id)

    def executions(self, correlation_id: str) -> list[ExecutionRecord]:
        """The execution rows of a job (one per hop for multi-hop programs)."""
        return ExecutionStore(self.engine).list(correlation_id=correlation_id)

    def recorded_error(self, task_id: str) -> dict[str, Any] | None:
        """The error recorded for a failed execution, if the store has it."""
        try:
            record = ExecutionStore(self.engine).get(task_id)
        except Exception:  # the store is optional for results: fall back to Celery's error
            return None
        return record.error if record is not None and record.error else None

    def pools(self, window_minutes: float = 15.0, timeout: float = 1.0) -> list[PoolStatus]:
        """Every pool's live workers, queue depth, breaker, rate-limit use and recent
        error rate (``dspyq pools``); workers get ``timeout`` seconds to answer."""
        return pool_statuses(
            self.settings, self.app, self.engine, window_minutes=window_minutes, timeout=timeout
        )

    @property
    def engine(self) -> Engine:
        with self._engine_lock:
            if self._engine is None:
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

    # --- internals ------------------------------------------------------------------------

    def _request(
        self,
        program: Module,
        lm: str | None,
        fallbacks: Sequence[str],
        lm_kwargs: Mapping[str, Any] | None,
        correlation_id: str | None,
        inputs: dict[str, Any],
        *,
        spec: dict[str, Any] | None,
    ) -> tuple[ExecutionRequest, str]:
        if not isinstance(program, Module):
            raise InputError(
                f"submit() takes a dspyq Module (Predict, ChainOfThought, ...), "
                f"not {type(program).__name__}"
            )
        model = lm or self._program_lm(program)
        for name in [model, *fallbacks]:
            self.settings.provider(split_model(name)[0])  # an unknown provider fails here
        validate_program_inputs(program, inputs)
        validate_input_json(inputs, self.settings.max_input_bytes)
        try:
            request = ExecutionRequest(
                program=spec or program_to_spec(program).model_dump(mode="json"),
                inputs=inputs,
                lm=model,
                lm_kwargs=dict(lm_kwargs or {}),
                correlation_id=correlation_id or new_correlation_id(),
                fallbacks=list(fallbacks),
                max_parse_retries=current().get("max_parse_retries"),
            )
        except ValueError as exc:
            raise InputError(f"invalid job: {exc}") from None
        task = MULTIHOP_TASK if isinstance(program, MultiHopQA) else EXECUTE_TASK
        return request, task

    def _program_lm(self, program: Module) -> str:
        lm = program.get_lm()
        if lm is not None:
            return str(lm.model)
        if self.settings.default_lm:
            return self.settings.default_lm
        raise ConfigurationError(
            "no LM for this job: pass lm='openai/gpt-4o-mini' to submit(), set an LM on the "
            "program, or set DSPYQ_DEFAULT_LM"
        )

    def _send_batch(self, requests: list[ExecutionRequest], producer: Any) -> list[Job]:
        if len(requests) == 1:
            return [self._send(EXECUTE_TASK, requests[0], producer=producer)]
        items = [BatchItem(uuid.uuid4().hex, r.model_dump(mode="json")) for r in requests]
        kind = requests[0].program.get("kind", "?").rpartition(":")[2]
        self.app.send_task(
            BATCH_TASK,
            kwargs=batch_message(items),
            queue=lm_queue(requests[0].provider),
            producer=producer,
            shadow=f"{BATCH_TASK}[{kind} x{len(items)}]",
            kwargsrepr=_shown_arguments(requests[0], len(items)),
            headers={JOBS_HEADER: len(items)},  # the worker's prefetch counts the jobs
        )
        return [
            Job(self, item.task_id, r.correlation_id)
            for item, r in zip(items, requests, strict=True)
        ]

    def _send(self, task_name: str, request: ExecutionRequest, producer: Any = None) -> Job:
        task_id = uuid.uuid4().hex
        # The root span of the job's trace (a no-op unless DSPYQ_TELEMETRY__OTLP_ENDPOINT).
        with submit_span(self.settings, request.correlation_id, task_name):
            self.app.send_task(
                task_name,
                kwargs={"request": request.model_dump(mode="json")},
                queue=lm_queue(request.provider),
                task_id=task_id,
                producer=producer,
                # Flower shows these instead of the raw JSON request.
                shadow=f"{task_name}[{request.program.get('kind', '?').rpartition(':')[2]}]",
                kwargsrepr=_shown_arguments(request),
            )
        return Job(self, task_id, request.correlation_id)


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = 3, 8, 80, 80


def _shown_arguments(request: ExecutionRequest, jobs: int = 1) -> str:
    """What Flower shows as a message's arguments: the LM, the correlation id and the
    (first job's) inputs, shortened.

    Given to Celery, which would otherwise build its own by walking the whole request,
    program spec included: about half a millisecond of the client's CPU per message.
    """
    shown: dict[str, Any] = {
        "lm": request.lm,
        "correlation_id": request.correlation_id,
        "inputs": request.inputs,
    }
    if jobs > 1:
        shown = {"jobs": jobs, **shown}
    return _SHOWN.repr(shown)
