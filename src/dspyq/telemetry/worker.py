"""Telemetry of a worker process: task hooks, event sinks and the Prometheus endpoint.

:func:`install_worker_telemetry` connects Celery's ``task_prerun``/``task_postrun``
signals (they run in the thread that runs the task, around it) to mark the job a
thread is running for the logs, count module executions, and open/close the job's
spans; and adds event sinks for the LM, breaker, limiter and optimizer metrics and
the LM spans. A job costs a few dictionary lookups and counter increments; no metric
adds a network round trip.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import signals
from celery.states import FAILURE, SUCCESS

from dspyq.core import observe
from dspyq.errors import ConfigurationError
from dspyq.settings import Settings
from dspyq.telemetry.logs import job_correlation
from dspyq.telemetry.metrics import WorkerMetrics
from dspyq.telemetry.tracing import JobSpans, JobTracer, tracer_for

__all__ = ["TaskHooks", "WorkerTelemetry", "install_worker_telemetry"]

logger = logging.getLogger(__name__)


@dataclass
class _Delivery:
    started: float
    token: contextvars.Token[str | None]
    module: str | None
    provider: str
    spans: JobSpans | None


class TaskHooks:
    """Receivers of Celery's task signals, keyed by task id while the task runs."""

    def __init__(self, metrics: WorkerMetrics | None, tracer: JobTracer | None) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self._running: dict[str, _Delivery] = {}

    def connect(self) -> None:
        signals.task_prerun.connect(self.before_task, weak=False)
        signals.task_postrun.connect(self.after_task, weak=False)

    def disconnect(self) -> None:
        signals.task_prerun.disconnect(self.before_task)
        signals.task_postrun.disconnect(self.after_task)

    def before_task(self, task_id: str, task: Any, kwargs: Any = None, **_: Any) -> None:
        request = kwargs.get("request") if isinstance(kwargs, dict) else None
        if not isinstance(request, dict):
            request = {}
        correlation_id = request.get("correlation_id")
        program = request.get("program")
        module = None
        if isinstance(program, dict):  # a module execution (not an optimizer's coordinator)
            module = str(program.get("kind", "")).rpartition(":")[2] or "Module"
        spans = None
        if self.tracer is not None and module is not None:
            try:
                spans = self.tracer.start(str(task.name), str(task_id), request)
            except Exception:
                logger.exception("could not open the spans of task %s", task_id)
        self._running[task_id] = _Delivery(
            started=time.perf_counter(),
            token=job_correlation.set(None if correlation_id is None else str(correlation_id)),
            module=module,
            provider=str(request.get("lm") or "").partition("/")[0],
            spans=spans,
        )

    def after_task(
        self, task_id: str, task: Any, retval: Any = None, state: str | None = None, **_: Any
    ) -> None:
        delivery = self._running.pop(task_id, None)
        if delivery is None:
            return
        error = retval if isinstance(retval, BaseException) else None
        try:
            # Only the ends of a job count: a re-queued delivery (IGNORED) continues elsewhere.
            if self.metrics is not None and delivery.module is not None and state in _FINAL:
                self.metrics.record_module_execution(
                    delivery.module,
                    delivery.provider,
                    time.perf_counter() - delivery.started,
                    None if state == SUCCESS else type(error).__name__ if error else "Error",
                )
            if self.tracer is not None and delivery.spans is not None:
                self.tracer.end(delivery.spans, str(state), error)
        finally:
            try:
                job_correlation.reset(delivery.token)
            except ValueError:  # postrun in another context than prerun: just clear it
                job_correlation.set(None)


_FINAL = frozenset({SUCCESS, FAILURE})


@dataclass
class WorkerTelemetry:
    """What :func:`install_worker_telemetry` installed, and how to take it out again."""

    hooks: TaskHooks
    metrics: WorkerMetrics | None
    metrics_port: int | None
    _undo: list[Callable[[], None]] = field(default_factory=list)

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def install_worker_telemetry(
    settings: Settings, *, pool: str, metrics_port: int | None, exec_pool: str = "threads"
) -> WorkerTelemetry:
    """Connect hooks and sinks; serve ``/metrics`` on ``metrics_port`` if given.

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
    hooks = TaskHooks(metrics, job_tracer)
    telemetry = WorkerTelemetry(hooks, metrics, metrics_port)
    hooks.connect()
    telemetry._undo.append(hooks.disconnect)
    if metrics is not None:
        telemetry._undo.append(observe.add_sink(metrics.observe_event))
    if job_tracer is not None:
        telemetry._undo.append(observe.add_sink(job_tracer.observe_event))
    if metrics is not None and metrics_port is not None:
        try:
            server, _thread = _start_http_server(metrics_port, metrics)
        except OSError as exc:
            telemetry.uninstall()
            raise ConfigurationError(
                f"cannot serve metrics on port {metrics_port}: {exc.strerror or exc}",
                context={"metrics_port": metrics_port},
            ) from None
        telemetry.metrics_port = server.server_port
        telemetry._undo.append(server.shutdown)
        logger.info("Prometheus metrics on http://0.0.0.0:%d/metrics", server.server_port)
    return telemetry


def _start_http_server(port: int, metrics: WorkerMetrics) -> tuple[Any, Any]:
    from prometheus_client import start_http_server

    return start_http_server(port, registry=metrics.registry)


def _runtime_cache_stats() -> tuple[Sequence[int], int] | None:
    from dspyq.workers.runtime import installed_runtime

    runtime = installed_runtime()
    if runtime is None:
        return None
    cache = runtime.cache
    return list(cache.hits), cache.misses


def _breaker_state(pool: str) -> dict[str, str]:
    from dspyq.workers.runtime import installed_runtime

    runtime = installed_runtime()
    if runtime is None or pool not in runtime.settings.providers:
        return {}
    return {pool: runtime.gate.guards(pool).breaker.status().state}
