"""Pool-wide protections shared in Redis by separate worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

import dspyq
from dspyq.errors import CircuitOpenError, ProviderUnavailableError
from dspyq.testing.cluster import make_cluster

pytestmark = pytest.mark.integration


def _qa() -> dspyq.Predict:
    return dspyq.Predict("question -> answer")


def _pids(cluster: object, jobs: list[dspyq.Job]) -> set[int]:
    client = cluster.client  # type: ignore[attr-defined]
    return {
        e.pid
        for job in jobs
        for e in client.events(job.correlation_id)
        if e.event_type == "module_execution_start"
    }


def test_breaker_opens_across_two_workers(tmp_path: Path, sqlite_url: str) -> None:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.0,
        DSPYQ_PROVIDERS__OPENAI__BREAKER_FAIL_MAX="3",
        DSPYQ_PROVIDERS__OPENAI__BREAKER_RESET_TIMEOUT="60",
        DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="0",
    )
    try:
        server.fail_next(1000, 503)
        cluster.start_worker("w1", concurrency=1)
        cluster.start_worker("w2", concurrency=1)
        errors: list[str] = []  # by name: a 503 is a DSPy-kind variant of its class
        jobs = []
        for i in range(10):
            job = cluster.client.submit(_qa(), lm="openai/m", question=f"q{i}")
            jobs.append(job)
            with pytest.raises((ProviderUnavailableError, CircuitOpenError)) as info:
                job.result(timeout=30)
            errors.append(type(info.value).__name__)

        # Three provider failures in all open it for the whole pool; the rest fail fast
        # without a request reaching the provider.
        assert errors[:3] == ["ProviderUnavailableError"] * 3
        assert errors[3:] == ["CircuitOpenError"] * 7
        assert len(server.requests) == 3
        assert len(_pids(cluster, jobs)) == 2  # both processes saw the shared state
    finally:
        cluster.stop()
        server.stop()


def test_rate_limit_holds_across_two_workers(tmp_path: Path, sqlite_url: str) -> None:
    rate = 5
    cluster, server = make_cluster(
        tmp_path, sqlite_url, latency=0.0, DSPYQ_PROVIDERS__OPENAI__RATE_LIMIT=f"{rate}/s"
    )
    try:
        server.answer_fields({"answer": "ok"})
        cluster.start_worker("w1", concurrency=4)
        cluster.start_worker("w2", concurrency=4)
        jobs = cluster.client.map(_qa(), [{"question": f"q{i}"} for i in range(24)], lm="openai/m")
        assert [j.result(timeout=90).answer for j in jobs] == ["ok"] * 24

        times = sorted(r["time"] for r in server.requests)
        assert len(times) == 24
        # No one-second window, wherever it starts, holds more than the limit. Grants are
        # exact on Redis's clock; arrival here adds each request's own network delay, so
        # the window measured at the provider gets a few milliseconds of slack.
        for i, start in enumerate(times):
            in_window = [t for t in times[i:] if t < start + 0.95]
            assert len(in_window) <= rate, f"{len(in_window)} requests within 1 s"
        # And the pool stays close to the limit: 24 requests need about 19 windows' worth.
        assert times[-1] - times[0] < (24 / rate) * 1.6
        assert len(_pids(cluster, jobs)) == 2
    finally:
        cluster.stop()
        server.stop()


def test_job_falls_back_to_the_next_provider(tmp_path: Path, sqlite_url: str) -> None:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.0,
        DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="0",
    )
    # The primary provider is down: nothing listens at its address.
    cluster.env["DSPYQ_PROVIDERS__OPENAI__API_BASE"] = "http://127.0.0.1:9/v1"
    try:
        server.answer_fields({"answer": "from anthropic"})
        cluster.start_worker("openai", pool="openai", concurrency=1)
        cluster.start_worker("anthropic", pool="anthropic", concurrency=1)
        job = cluster.client.submit(
            _qa(), lm="openai/m", fallbacks=["anthropic/claude-test"], question="q"
        )
        assert job.result(timeout=60).answer == "from anthropic"

        [fallback] = [
            e for e in cluster.client.events(job.correlation_id) if e.event_type == "lm_fallback"
        ]
        assert fallback.data["from_lm"] == "openai/m"
        assert fallback.data["to_lm"] == "anthropic/claude-test"
        assert server.requests[-1]["protocol"] == "anthropic"
        [row] = cluster.client.executions(job.correlation_id)
        assert row.status == "succeeded"
    finally:
        cluster.stop()
        server.stop()
