"""Metrics derived from events, log records stamped with the job, trace ids from job ids."""

from __future__ import annotations

import contextlib
import logging
import uuid

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dspyq.core.context import context
from dspyq.events import Event
from dspyq.settings import Settings, TelemetrySettings
from dspyq.telemetry.logs import install_log_correlation, job_correlation
from dspyq.telemetry.metrics import WorkerMetrics
from dspyq.telemetry.tracing import submit_span, submit_span_id_for, trace_id_for, tracer_for


def _samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _lm_event(**data: object) -> Event:
    base = {"provider": "openai", "model": "gpt-4o-mini", "duration_ms": 120.0, "status": "ok"}
    return Event(event_type="lm_request", data={**base, **data})


def test_lm_request_events_become_latency_tokens_and_cost() -> None:
    metrics = WorkerMetrics(cache_stats=lambda: ([3, 1, 0], 4))
    metrics.observe_event(_lm_event(input_tokens=10, output_tokens=5, cost_usd=0.25))
    metrics.observe_event(_lm_event(input_tokens=10, output_tokens=5, cache_hit=True))
    samples = _samples(metrics)

    model = (("model", "gpt-4o-mini"), ("provider", "openai"))
    assert samples[("dspyq_lm_request_cost_usd_total", model)] == 0.25
    assert samples[("dspyq_lm_request_tokens_total", (("direction", "input"), *model))] == 10
    hits = (("cache_hit", "true"), *model, ("status", "ok"))
    assert samples[("dspyq_lm_request_duration_seconds_count", tuple(sorted(hits)))] == 1
    assert samples[("dspyq_cache_hit_rate", ())] == 0.5
    assert samples[("dspyq_cache_hits_total", (("layer", "l2"),))] == 1


def test_breaker_limiter_optimizer_and_module_metrics() -> None:
    metrics = WorkerMetrics(breaker_states=lambda: {"openai": "half-open"})
    metrics.observe_event(
        Event(event_type="circuit_breaker_state_change", data={"provider": "x", "to": "open"})
    )
    metrics.observe_event(Event(event_type="rate_limit_rejected", data={"provider": "openai"}))
    metrics.observe_event(
        Event(
            event_type="optimization_iteration",
            data={"optimizer": "COPRO", "evaluation_score": 0.75},
        )
    )
    metrics.record_module_execution("Predict", "openai", 0.5)
    metrics.record_module_execution("Predict", "openai", 0.5, error="ProviderError")
    samples = _samples(metrics)

    assert samples[("dspyq_circuit_breaker_state", (("provider", "openai"),))] == 1
    assert samples[("dspyq_circuit_breaker_state", (("provider", "x"),))] == 2
    assert samples[("dspyq_rate_limiter_rejected_total", (("provider", "openai"),))] == 1
    assert samples[("dspyq_optimization_iteration_total", (("optimizer", "COPRO"),))] == 1
    assert samples[("dspyq_optimization_score", (("optimizer", "COPRO"),))] == 0.75
    predict = (("module", "Predict"), ("provider", "openai"))
    assert samples[("dspyq_module_execution_success_total", predict)] == 1
    error = (("error", "ProviderError"), *predict)
    assert samples[("dspyq_module_execution_error_total", error)] == 1


def test_a_breaker_read_failure_keeps_the_scrape_alive() -> None:
    def broken() -> dict[str, str]:
        raise ConnectionError("redis down")

    metrics = WorkerMetrics(breaker_states=broken)
    assert "dspyq_circuit_breaker_state" in generate_latest(metrics.registry).decode()


def test_log_records_carry_the_running_jobs_correlation_id() -> None:
    install_log_correlation()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("dspyq.test.telemetry")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("outside")
        with context(correlation_id="cid-module"):
            log.info("in a module")
        token = job_correlation.set("cid-task")
        log.info("in a task")
        job_correlation.reset(token)
    finally:
        log.removeHandler(handler)
    assert [r.correlation_id for r in records] == ["-", "cid-module", "cid-task"]  # type: ignore[attr-defined]


def test_trace_ids_come_from_correlation_ids() -> None:
    cid = uuid.uuid4().hex
    assert trace_id_for(cid) == int(cid, 16)
    assert 0 < trace_id_for("not-hex-id") < 2**128
    assert trace_id_for("not-hex-id") == trace_id_for("not-hex-id")
    assert 0 < submit_span_id_for(cid) < 2**64
    assert submit_span_id_for(cid) != submit_span_id_for(uuid.uuid4().hex)


def test_tracing_is_off_and_free_without_an_endpoint() -> None:
    settings = Settings(telemetry=TelemetrySettings(otlp_endpoint=None))
    assert tracer_for(settings) is None
    assert isinstance(submit_span(settings, "cid", "task"), contextlib.nullcontext)


def _listening_address(port: int) -> str:
    """The local address a listening TCP socket of this machine on ``port`` is bound to."""
    import socket

    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                return socket.inet_ntoa(bytes.fromhex(address)[::-1])
    raise AssertionError(f"nothing listens on port {port}")


@pytest.mark.parametrize(("host", "expected"), [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_metrics_endpoint_binds_loopback_unless_widened(
    monkeypatch: pytest.MonkeyPatch, host: str | None, expected: str
) -> None:
    from dspyq.telemetry.worker import install_worker_telemetry

    if host is not None:
        monkeypatch.setenv("DSPYQ_METRICS_HOST", host)
    telemetry = install_worker_telemetry(Settings(), pool="openai", metrics_port=0)
    try:
        assert telemetry.metrics_port
        assert _listening_address(telemetry.metrics_port) == expected
    finally:
        telemetry.uninstall()
