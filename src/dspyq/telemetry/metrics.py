"""The seed's telemetry schema as Prometheus metrics, fed by the events a worker emits.

Seed name (dotted) -> Prometheus name (``.`` becomes ``_``, units and ``_total`` added
as Prometheus names them):

=================================== ==================================================
``dspyq.module.execution.duration`` ``dspyq_module_execution_duration_seconds`` (histogram)
``dspyq.module.execution.success``  ``dspyq_module_execution_success_total``
``dspyq.module.execution.error``    ``dspyq_module_execution_error_total``
``dspyq.lm.request.duration``       ``dspyq_lm_request_duration_seconds`` (histogram)
``dspyq.lm.request.tokens``         ``dspyq_lm_request_tokens_total`` (``direction``)
``dspyq.lm.request.cost``           ``dspyq_lm_request_cost_usd_total``
``dspyq.optimization.iteration``    ``dspyq_optimization_iteration_total``
``dspyq.optimization.score``        ``dspyq_optimization_score`` (gauge)
``dspyq.circuit_breaker.state``     ``dspyq_circuit_breaker_state`` (0 closed, 1 half-open, 2 open)
``dspyq.rate_limiter.rejected``     ``dspyq_rate_limiter_rejected_total``
``dspyq.cache.hit_rate``            ``dspyq_cache_hit_rate`` (gauge), with
                                    ``dspyq_cache_hits_total{layer}`` and
                                    ``dspyq_cache_misses_total`` to rate over a window
``performance_degradation_detected`` ``dspyq_alerts_total{kind,program,pool}`` and
                                    ``dspyq_alert_observed`` (gauge), from ``dspyq watch``
=================================== ==================================================

The seed has tokens and cost as gauges; here they are counters, because a gauge of the
last request's tokens says nothing between two scrapes while a counter's ``rate()``
gives tokens and dollars per second.

Everything is derived from what already happens: ``lm_request``,
``circuit_breaker_state_change``, ``rate_limit_rejected`` and ``optimization_iteration``
events (:meth:`WorkerMetrics.observe_event`, an event sink), module executions as the
task hooks see them (:meth:`WorkerMetrics.record_module_execution`), and the cache's own
counters and the breaker's Redis state read at scrape time. No metric costs the job a
network round trip.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dspyq.events import Event

__all__ = [
    "BREAKER_STATE_VALUES",
    "CacheStats",
    "WorkerMetrics",
]

logger = logging.getLogger(__name__)

BREAKER_STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}
"""``dspyq_circuit_breaker_state`` values."""

LM_REQUEST = "lm_request"
BREAKER_STATE_CHANGE = "circuit_breaker_state_change"
RATE_LIMIT_REJECTED = "rate_limit_rejected"
OPTIMIZATION_ITERATION = "optimization_iteration"

# LM calls take from milliseconds (cache hits) to minutes (long generations).
_DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

CacheStats = Callable[[], tuple[Sequence[int], int] | None]
"""Returns ``(hits per layer, misses)`` of the process's cache, or None if there is none."""

BreakerStates = Callable[[], dict[str, str]]
"""Returns the current breaker state of each provider of interest (read at scrape time)."""


class WorkerMetrics:
    """One process's metrics in their own registry (served by :func:`start_metrics_server`)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        cache_stats: CacheStats | None = None,
        breaker_states: BreakerStates | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.module_duration = Histogram(
            "dspyq_module_execution_duration_seconds",
            "Module executions' wall time in the worker (dspyq.module.execution.duration).",
            ["module", "provider", "outcome"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.module_success = Counter(
            "dspyq_module_execution_success",
            "Module executions that succeeded (dspyq.module.execution.success).",
            ["module", "provider"],
            registry=r,
        )
        self.module_error = Counter(
            "dspyq_module_execution_error",
            "Module executions that failed, by error type (dspyq.module.execution.error).",
            ["module", "provider", "error"],
            registry=r,
        )
        self.lm_duration = Histogram(
            "dspyq_lm_request_duration_seconds",
            "LM calls' latency, cache hits included (dspyq.lm.request.duration).",
            ["provider", "model", "status", "cache_hit"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.lm_tokens = Counter(
            "dspyq_lm_request_tokens",
            "Tokens sent to and received from providers, cache hits excluded "
            "(dspyq.lm.request.tokens).",
            ["provider", "model", "direction"],
            registry=r,
        )
        self.lm_cost = Counter(
            "dspyq_lm_request_cost_usd",
            "Dollars spent at providers, cache hits excluded (dspyq.lm.request.cost).",
            ["provider", "model"],
            registry=r,
        )
        self.optimization_iteration = Counter(
            "dspyq_optimization_iteration",
            "Candidates scored by optimizers (dspyq.optimization.iteration).",
            ["optimizer"],
            registry=r,
        )
        self.optimization_score = Gauge(
            "dspyq_optimization_score",
            "Score of the latest candidate an optimizer scored (dspyq.optimization.score).",
            ["optimizer"],
            registry=r,
        )
        self.limiter_rejected = Counter(
            "dspyq_rate_limiter_rejected",
            "Calls the shared rate limiter refused; the job waits off the worker "
            "(dspyq.rate_limiter.rejected).",
            ["provider"],
            registry=r,
        )
        self.alerts = Counter(
            "dspyq_alerts",
            "Thresholds the watcher saw crossed, one per window (performance_degradation_detected).",
            ["kind", "program", "pool"],
            registry=r,
        )
        self.alert_observed = Gauge(
            "dspyq_alert_observed",
            "The value measured when the latest alert of its kind was raised.",
            ["kind", "program", "version", "pool"],
            registry=r,
        )
        self._breaker_seen: dict[str, str] = {}
        self._breaker_states = breaker_states
        self._cache_stats = cache_stats
        self._lock = threading.Lock()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r.register(_ScrapeTimeCollector(self))

    # --- sinks and hooks --------------------------------------------------------------

    def observe_event(self, event: Event) -> None:
        """An event sink (``dspyq.core.observe.add_sink``): count what the event reports."""
        kind = event.event_type
        if kind == LM_REQUEST:
            self._lm_request(event.data)
        elif kind == BREAKER_STATE_CHANGE:
            with self._lock:
                self._breaker_seen[str(event.data.get("provider"))] = str(event.data.get("to"))
        elif kind == RATE_LIMIT_REJECTED:
            self.limiter_rejected.labels(str(event.data.get("provider", ""))).inc()
        elif kind == OPTIMIZATION_ITERATION:
            self._optimization_iteration(event.data)

    def record_module_execution(
        self, module: str, provider: str, seconds: float, error: str | None = None
    ) -> None:
        """Count one finished module execution (``error``: the exception's type name)."""
        outcome = "success" if error is None else "error"
        self._child(self.module_duration, module, provider, outcome).observe(seconds)
        if error is None:
            self._child(self.module_success, module, provider).inc()
        else:
            self._child(self.module_error, module, provider, error).inc()

    def record_alert(self, alert: Any) -> None:
        """Count one alert the watcher raised (an :class:`~dspyq.store.models.AlertRecord`)."""
        program, pool = str(alert.program_name), str(alert.pool)
        self.alerts.labels(alert.kind, program, pool).inc()
        labels = (alert.kind, program, str(alert.program_version), pool)
        self.alert_observed.labels(*labels).set(float(alert.observed))

    def _child(self, metric: Any, *labels: str) -> Any:
        # prometheus-client's labels() costs several microseconds (a lock, validation);
        # the few label combinations of a worker are looked up once each.
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _lm_request(self, data: dict[str, Any]) -> None:
        provider = str(data.get("provider") or "")
        model = str(data.get("model") or "")
        cache_hit = bool(data.get("cache_hit"))
        status = str(data.get("status") or "ok")
        seconds = float(data.get("duration_ms") or 0.0) / 1000.0
        hit = "true" if cache_hit else "false"
        self._child(self.lm_duration, provider, model, status, hit).observe(seconds)
        if cache_hit:
            return
        input_tokens = int(data.get("input_tokens") or 0)
        output_tokens = int(data.get("output_tokens") or 0)
        if input_tokens:
            self._child(self.lm_tokens, provider, model, "input").inc(input_tokens)
        if output_tokens:
            self._child(self.lm_tokens, provider, model, "output").inc(output_tokens)
        cost = float(data.get("cost_usd") or 0.0)
        if cost:
            self._child(self.lm_cost, provider, model).inc(cost)

    def _optimization_iteration(self, data: dict[str, Any]) -> None:
        optimizer = str(data.get("optimizer") or "")
        self.optimization_iteration.labels(optimizer).inc()
        score = data.get("evaluation_score")
        if isinstance(score, int | float):
            self.optimization_score.labels(optimizer).set(float(score))

    # --- read at scrape time ----------------------------------------------------------

    def breaker_states(self) -> dict[str, str]:
        """Breaker state per provider: Redis's view where readable, else the last seen here."""
        with self._lock:
            states = dict(self._breaker_seen)
        if self._breaker_states is not None:
            try:
                states.update(self._breaker_states())
            except Exception:
                logger.warning("could not read breaker states for /metrics", exc_info=True)
        return states

    def cache_stats(self) -> tuple[Sequence[int], int] | None:
        return self._cache_stats() if self._cache_stats is not None else None


class _ScrapeTimeCollector(Collector):
    """Metrics whose truth lives elsewhere (Redis, the cache's counters), read per scrape."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: read from live sources at collect time

    def collect(self) -> Iterator[Metric]:
        breaker = GaugeMetricFamily(
            "dspyq_circuit_breaker_state",
            "Providers' shared circuit breaker: 0 closed, 1 half-open, 2 open "
            "(dspyq.circuit_breaker.state).",
            labels=["provider"],
        )
        for provider, state in sorted(self.metrics.breaker_states().items()):
            breaker.add_metric([provider], BREAKER_STATE_VALUES.get(state, -1))
        yield breaker

        stats = self.metrics.cache_stats()
        if stats is None:
            return
        hits, misses = stats
        lookups = sum(hits) + misses
        yield GaugeMetricFamily(
            "dspyq_cache_hit_rate",
            "Share of LM cache lookups answered by any layer since the worker started "
            "(dspyq.cache.hit_rate).",
            value=sum(hits) / lookups if lookups else 0.0,
        )
        per_layer = CounterMetricFamily(
            "dspyq_cache_hits", "LM cache lookups answered, by layer.", labels=["layer"]
        )
        for depth, count in enumerate(hits, start=1):
            per_layer.add_metric([f"l{depth}"], count)
        yield per_layer
        yield CounterMetricFamily(
            "dspyq_cache_misses", "LM cache lookups no layer could answer.", value=misses
        )
