"""Optional OpenTelemetry traces: one trace per correlation id, across processes.

A job's trace is ``submit`` (client) -> ``task <name>`` (worker) -> ``module <Type>.<method>``
-> ``lm <provider>/<model>`` per LM call, exported over OTLP/HTTP when
``DSPYQ_TELEMETRY__OTLP_ENDPOINT`` is set (``pip install 'dspyq[otel]'``). Unset, nothing
here is imported and no span is built.

How the processes agree without any header on the message: the trace id *is* the
correlation id (a 32-hex-digit uuid is exactly a 128-bit trace id; any other id is
hashed to one), and the client's ``submit`` span gets a span id derived from it too.
A worker therefore knows the trace and the parent of its task span from the job
request alone, so re-queued deliveries, fallbacks to another provider and the hops of
a multi-hop chord all land in the same trace under the same ``submit`` span, and
``dspyq events <correlation-id>`` and the trace are found by the same id. When the
client does not trace, worker spans still share their trace and point at a ``submit``
span the backend never received (shown as a missing root).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from dspyq.errors import ConfigurationError
from dspyq.events import Event
from dspyq.masking import mask, mask_text
from dspyq.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "JobSpans",
    "JobTracer",
    "flush",
    "submit_span",
    "submit_span_id_for",
    "trace_id_for",
    "tracer_for",
]

TRACES_PATH = "/v1/traces"
INSTRUMENTATION_NAME = "dspyq"

_tracers: dict[tuple[str, str], Tracer] = {}
_providers: list[Any] = []
_tracers_lock = threading.Lock()
_forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "dspyq_forced_span_ids", default=None
)
_module_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "dspyq_module_span", default=None
)


def trace_id_for(correlation_id: str) -> int:
    """The 128-bit trace id of a correlation id (the id itself when it is 32 hex digits)."""
    if len(correlation_id) == 32:
        try:
            value = int(correlation_id, 16)
        except ValueError:
            value = 0
        if value:
            return value
    digest = hashlib.sha256(correlation_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:16], "big") or 1


def submit_span_id_for(correlation_id: str) -> int:
    """The 64-bit span id of the client's ``submit`` span, known to every worker."""
    digest = hashlib.sha256(f"{correlation_id}/submit".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def tracer_for(settings: Settings) -> Tracer | None:
    """The tracer exporting to ``settings.telemetry.otlp_endpoint``; None when it is unset."""
    endpoint = settings.telemetry.otlp_endpoint
    if not endpoint:
        return None
    key = (endpoint, settings.telemetry.service_name)
    tracer = _tracers.get(key)
    if tracer is None:
        with _tracers_lock:
            tracer = _tracers.get(key)
            if tracer is None:
                tracer = _build_tracer(endpoint, settings.telemetry.service_name)
                _tracers[key] = tracer
    return tracer


def _build_tracer(endpoint: str, service_name: str) -> Tracer:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import IdGenerator
    except ImportError as exc:
        raise ConfigurationError(
            "DSPYQ_TELEMETRY__OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
            "pip install 'dspyq[otel]'",
            context={"missing": exc.name},
        ) from None

    class CorrelationIds(IdGenerator):
        """Random ids, except for the span started under :func:`_forced`."""

        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced else random.getrandbits(64) or 1

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced else random.getrandbits(128) or 1

    url = endpoint.rstrip("/")
    if not url.endswith(TRACES_PATH):
        url += TRACES_PATH
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "process.pid": os.getpid()}),
        id_generator=CorrelationIds(),
    )
    exporter = MaskingExporter(OTLPSpanExporter(endpoint=url))
    provider.add_span_processor(BatchSpanProcessor(cast(Any, exporter)))  # SpanExporter's shape
    _providers.append(provider)
    return provider.get_tracer(INSTRUMENTATION_NAME)


class MaskingExporter:
    """Exports spans through ``inner`` with their secrets masked: every attribute of the
    span and of its events (an exception's message and stack trace among them) and its
    status text, by key and by shape (:mod:`dspyq.masking`)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def export(self, spans: Any) -> Any:
        return self.inner.export([_masked_span(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


def _masked_span(span: Any) -> Any:
    from opentelemetry.sdk.trace import Event as SpanEvent
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Status

    status = span.status
    if status.description:
        status = Status(status.status_code, mask_text(status.description))
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=mask(dict(span.attributes or {})),
        events=[
            SpanEvent(e.name, mask(dict(e.attributes or {})), e.timestamp) for e in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def flush(timeout_millis: int = 5000) -> None:
    """Export every span ended so far (a short-lived client calls this before it exits)."""
    for provider in list(_providers):
        provider.force_flush(timeout_millis)


_OFF = contextlib.nullcontext()


def submit_span(
    settings: Settings, correlation_id: str, task_name: str
) -> contextlib.AbstractContextManager[Any]:
    """The client's root span of a job around publishing it (a no-op when tracing is off)."""
    if not settings.telemetry.otlp_endpoint:
        return _OFF
    tracer = tracer_for(settings)
    assert tracer is not None
    return _submit_span(tracer, correlation_id, task_name)


@contextlib.contextmanager
def _submit_span(tracer: Tracer, correlation_id: str, task_name: str) -> Iterator[Span]:
    from opentelemetry import context as otel_context
    from opentelemetry.trace import SpanKind

    token = _forced_ids.set((trace_id_for(correlation_id), submit_span_id_for(correlation_id)))
    try:
        # A fresh context: the job's trace is its own even inside a caller's span.
        span = tracer.start_span(
            f"submit {task_name}",
            context=otel_context.Context(),
            kind=SpanKind.PRODUCER,
            attributes={"dspyq.correlation_id": correlation_id, "celery.task_name": task_name},
        )
    finally:
        _forced_ids.reset(token)
    with span:
        yield span


@dataclass
class JobSpans:
    """The spans of one execution in a worker, ended by :meth:`JobTracer.end`."""

    task: Span
    module: Span
    token: contextvars.Token[Span | None]


class JobTracer:
    """Worker side: task and module spans per execution, an LM span per ``lm_request`` event."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def start(
        self, correlation_id: str, record_id: str, module_type: str, method: str, lm: str
    ) -> JobSpans:
        """Open the spans of one execution (``record_id``) of the job ``correlation_id``."""
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            SpanKind,
            TraceFlags,
            set_span_in_context,
        )

        submit = NonRecordingSpan(
            SpanContext(
                trace_id=trace_id_for(correlation_id),
                span_id=submit_span_id_for(correlation_id),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
        task = self.tracer.start_span(
            f"task {module_type}.{method}",
            context=set_span_in_context(submit),
            kind=SpanKind.CONSUMER,
            attributes={
                "dspyq.correlation_id": correlation_id,
                "dspyq.task_id": record_id,
                "dspyq.lm": lm,
            },
        )
        module = self.tracer.start_span(
            f"module {module_type}.{method}",
            context=set_span_in_context(task),
            attributes={"dspyq.module": module_type, "dspyq.method": method},
        )
        return JobSpans(task, module, _module_span.set(module))

    def end(self, spans: JobSpans, outcome: str, error: BaseException | None) -> None:
        """Close an execution's spans; ``outcome`` is success, error or requeued."""
        from opentelemetry.trace import Status, StatusCode

        if error is not None and outcome == "error":
            spans.module.record_exception(error)
            spans.module.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            spans.task.set_status(Status(StatusCode.ERROR, type(error).__name__))
        spans.task.set_attribute("dspyq.outcome", outcome)
        end = time.time_ns()
        spans.module.end(end)
        spans.task.end(end)
        try:
            _module_span.reset(spans.token)
        except ValueError:  # ended in another context than it started: nothing to restore
            _module_span.set(None)

    def observe_event(self, event: Event) -> None:
        """Event sink: an ``lm_request`` becomes a finished span under the running module."""
        if event.event_type != "lm_request":
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

        parent = _module_span.get()
        if parent is None:
            return
        data = event.data
        provider, model = str(data.get("provider") or ""), str(data.get("model") or "")
        end = int(event.timestamp.timestamp() * 1e9)
        start = end - int(float(data.get("duration_ms") or 0.0) * 1e6)
        full_name = model if model.startswith(f"{provider}/") else f"{provider}/{model}"
        span = self.tracer.start_span(
            f"lm {full_name}",
            context=set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            start_time=start,
            attributes={
                "dspyq.correlation_id": event.correlation_id or "",
                "gen_ai.system": provider,
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": int(data.get("input_tokens") or 0),
                "gen_ai.usage.output_tokens": int(data.get("output_tokens") or 0),
                "dspyq.cost_usd": float(data.get("cost_usd") or 0.0),
                "dspyq.cache_hit": bool(data.get("cache_hit")),
                "dspyq.status": str(data.get("status") or "ok"),
            },
        )
        if str(data.get("status") or "ok") != "ok":
            span.set_status(Status(StatusCode.ERROR, str(data.get("error") or data["status"])))
        span.end(end)
