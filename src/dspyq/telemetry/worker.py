"""Telemetry of a worker process: hooks, event sinks and the Prometheus endpoint.

:func:`install_worker_telemetry` builds an execution hook (:mod:`dspyq.tasks.hooks`),
added to each worker context as it is installed (:meth:`WorkerTelemetry.attach`), that
counts module executions and opens/closes their spans, whether a job came alone or in
a batch; event sinks for the LM, breaker, limiter and optimizer metrics and the LM
spans; and Celery task signals that mark the job a thread runs, for Celery's own log
lines. A job costs a few dictionary lookups and counter increments; no metric adds a
network round trip.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import signals

from dspyq.core import observe
from dspyq.errors import ConfigurationError, DspyqError
from dspyq.settings import Settings
from dspyq.tasks.messages import ExecutionRequest
from dspyq.telemetry.logs import job_correlation
from dspyq.telemetry.metrics import WorkerMetrics
from dspyq.telemetry.tracing import JobSpans, JobTracer, tracer_for

if TYPE_CHECKING:
    from dspyq.tasks.context import WorkerContext

__all__ = ["ExecutionTelemetry", "TaskHooks", "WorkerTelemetry", "install_worker_telemetry"]

logger = logging.getLogger(__name__)


class TaskHooks:
    """Celery's task signals mark the job a thread runs, for the log lines Celery writes.

    ``task_prerun``/``task_postrun`` run in the thread that runs the task, around it.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, contextvars.Token[str | None]] = {}

    def connect(self) -> None:
        signals.task_prerun.connect(self.before_task, weak=False)
        signals.task_postrun.connect(self.after_task, weak=False)

    def disconnect(self) -> None:
        signals.task_prerun.disconnect(self.before_task)
        signals.task_postrun.disconnect(self.after_task)

    def before_task(self, task_id: str, kwargs: Any = None, **_: Any) -> None:
        request = kwargs.get("request") if isinstance(kwargs, dict) else None
        correlation_id = request.get("correlation_id") if isinstance(request, dict) else None
        value = None if correlation_id is None else str(correlation_id)
        self._tokens[task_id] = job_correlation.set(value)

    def after_task(self, task_id: str, **_: Any) -> None:
        token = self._tokens.pop(task_id, None)
        if token is None:
            return
        try:
            job_correlation.reset(token)
        except ValueError:  # postrun in another context than prerun: just clear it
            job_correlation.set(None)


class ExecutionTelemetry:
    """An execution hook (:mod:`dspyq.tasks.hooks`): module metrics and spans per execution."""

    def __init__(self, metrics: WorkerMetrics | None, tracer: JobTracer | None) -> None:
        self.metrics = metrics
        self.tracer = tracer

    def start(
        self, request: ExecutionRequest, record_id: str
    ) -> Callable[[BaseException | None], None]:
        started = time.perf_counter()
        module = str(request.program.get("kind", "")).rpartition(":")[2] or "Module"
        provider = request.lm.partition("/")[0]
        token = job_correlation.set(request.correlation_id)
        spans: JobSpans | None = None
        if self.tracer is not None:
            try:
                spans = self.tracer.start(
                    request.correlation_id, record_id, module, request.method, request.lm
                )
            except Exception:
                logger.exception("could not open the spans of execution %s", record_id)

        def end(error: BaseException | None) -> None:
            # A job's own failures are DspyqErrors; anything else (Celery's Ignore after a
            # re-queue, a batch job sent on) means the job goes on elsewhere.
            if error is None:
                outcome = "success"
            elif isinstance(error, DspyqError):
                outcome = "error"
            else:
                outcome = "requeued"
            try:
                if self.metrics is not None and outcome != "requeued":
                    self.metrics.record_module_execution(
                        module,
                        provider,
                        time.perf_counter() - started,
                        None if error is None else type(error).__name__,
                    )
                if spans is not None and self.tracer is not None:
                    self.tracer.end(spans, outcome, error)
            finally:
                try:
                    job_correlation.reset(token)
                except ValueError:
                    job_correlation.set(None)

        return end


@dataclass
class WorkerTelemetry:
    """What :func:`install_worker_telemetry` installed, and how to take it out again."""

    hooks: TaskHooks
    metrics: WorkerMetrics | None
    metrics_port: int | None
    execution_hook: ExecutionTelemetry | None = None
    _undo: list[Callable[[], None]] = field(default_factory=list)

    def attach(self, ctx: WorkerContext) -> None:
        """Observe the executions of ``ctx`` (a worker process's context)."""
        if self.execution_hook is not None:
            self._undo.append(ctx.hooks.add(self.execution_hook))

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def install_worker_telemetry(
    settings: Settings, *, pool: str, metrics_port: int | None, exec_pool: str = "threads"
) -> WorkerTelemetry:
    """Connect hooks and sinks; serve ``/metrics`` on ``metrics_port`` if given. The
    execution hook observes the worker contexts it is attached to.

    Raises :class:`ConfigurationError` if the port cannot be bound, or with the prefork
    execution pool (its children would each need the port).
    """
    metrics = None
    if metrics_port is not None:
        if exec_pool == "prefork":
            raise ConfigurationError(
                "--metrics-port needs the threads or gevent execution pool: prefork "
                "children cannot share one metrics port",
                context={"exec_pool": exec_pool},
            )
        metrics = WorkerMetrics(
            cache_stats=_runtime_cache_stats, breaker_states=lambda: _breaker_state(pool)
        )
    tracer = tracer_for(settings)
    job_tracer = JobTracer(tracer) if tracer is not None else None
    hooks = TaskHooks()
    telemetry = WorkerTelemetry(hooks, metrics, metrics_port)
    hooks.connect()
    telemetry._undo.append(hooks.disconnect)
    if metrics is not None or job_tracer is not None:
        telemetry.execution_hook = ExecutionTelemetry(metrics, job_tracer)
    if metrics is not None:
        telemetry._undo.append(observe.add_sink(metrics.observe_event))
    if job_tracer is not None:
        telemetry._undo.append(observe.add_sink(job_tracer.observe_event))
    if metrics is not None and metrics_port is not None:
        try:
            server, _thread = _start_http_server(settings.metrics_host, metrics_port, metrics)
        except OSError as exc:
            telemetry.uninstall()
            raise ConfigurationError(
                f"cannot serve metrics on {settings.metrics_host}:{metrics_port}: "
                f"{exc.strerror or exc}",
                context={"metrics_port": metrics_port, "metrics_host": settings.metrics_host},
            ) from None
        telemetry.metrics_port = server.server_port
        telemetry._undo.append(server.shutdown)
        logger.info(
            "Prometheus metrics on http://%s:%d/metrics", settings.metrics_host, server.server_port
        )
    return telemetry


def _start_http_server(host: str, port: int, metrics: WorkerMetrics) -> tuple[Any, Any]:
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=metrics.registry)


def _runtime_cache_stats() -> tuple[Sequence[int], int] | None:
    from dspyq.workers.context import installed_runtime

    runtime = installed_runtime()
    if runtime is None:
        return None
    cache = runtime.cache
    return list(cache.hits), cache.misses


def _breaker_state(pool: str) -> dict[str, str]:
    from dspyq.workers.context import installed_runtime

    runtime = installed_runtime()
    if runtime is None or pool not in runtime.settings.providers:
        return {}
    return {pool: runtime.gate.guards(pool).breaker.status().state}
