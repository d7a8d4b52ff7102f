"""Provider faults seen through real workers: every failed attempt is recorded with its
cause, retries follow Retry-After and their budget (no retry storm: requests are counted
at the fake provider), and a provider down for a while opens the pool's breaker, sends
jobs to their fallback and is used again once it recovers.

Complements test_pool_resilience.py (breaker shared by two workers, rate limit, fallback
to a provider that refuses connections) and test_breaker.py (the breaker itself).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

import dspyq
from dspyq.errors import ProviderUnavailableError
from dspyq.store import make_engine
from dspyq.store.models import EventRecord
from dspyq.testing import FakeLMServer
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration


def _qa() -> dspyq.Predict:
    return dspyq.Predict("question -> answer")


def _lm_requests(cluster: Cluster, job: dspyq.Job) -> list[dict[str, Any]]:
    """The job's recorded lm_request events, oldest first."""
    return [
        e.data for e in cluster.client.events(job.correlation_id) if e.event_type == "lm_request"
    ]


def _events(database_url: str, event_type: str) -> list[dict[str, Any]]:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(col(EventRecord.data))
            .where(col(EventRecord.event_type) == event_type)
            .order_by(col(EventRecord.timestamp))
        ).all()
    engine.dispose()
    return [row[0] for row in rows]


def test_each_fault_is_retried_within_budget_and_recorded_with_its_cause(
    tmp_path: Path, sqlite_url: str
) -> None:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.0,
        DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="2",
        DSPYQ_PROVIDERS__OPENAI__TIMEOUT="0.5",
        DSPYQ_PROVIDERS__OPENAI__BREAKER_FAIL_MAX="1000",
        DSPYQ_CACHE__ENABLED="false",
    )
    try:
        server.answer_fields({"answer": "ok"})
        cluster.start_worker("w1", concurrency=4)
        cases: list[tuple[str, dict[str, Any], str, str]] = [
            # (question, failure, recorded status, text in the recorded error)
            ("burst", {"count": 2, "status": 502}, "ProviderUnavailableError", "502"),
            ("timeout", {"kind": "slow", "delay": 2.0}, "ProviderUnavailableError", "in time"),
            ("truncated", {"kind": "truncated"}, "MalformedResponseError", ""),
            ("malformed", {"kind": "malformed"}, "MalformedResponseError", ""),
        ]
        for question, failure, status, cause in cases:
            server.clear_requests()
            server.fail_next(**failure)
            job = cluster.client.submit(_qa(), lm="openai/m", question=question)
            assert job.result(timeout=30).answer == "ok", question
            failed = failure.get("count", 1)
            assert len(server.requests) == failed + 1, question  # each failure retried once
            records = _lm_requests(cluster, job)
            assert [r["status"] for r in records] == [status] * failed + ["ok"], question
            assert all(cause in r.get("error", "") for r in records[:-1]), str(records)

        # A 429 storm: every job is refused once with Retry-After: 1. Each retries once,
        # after the second the provider asked for, not before.
        server.clear_requests()
        server.rate_limit_next(8, retry_after=1.0)
        jobs = cluster.client.map(_qa(), [{"question": f"s{i}"} for i in range(8)], lm="openai/m")
        assert [j.result(timeout=30).answer for j in jobs] == ["ok"] * 8
        requests = server.requests
        assert len(requests) == 16
        refused = [r["time"] for r in requests if r["status"] == 429]
        answered = [r["time"] for r in requests if r["status"] == 200]
        assert min(answered) - min(refused) >= 0.95
        assert all(
            r["status"] == "RateLimitedError" and r["retry_after"] == 1.0
            for j in jobs
            for r in _lm_requests(cluster, j)[:-1]
        )

        # Failing for good: 1 + 2 retries, no more, and the job's error says why.
        server.clear_requests()
        server.fail_next(3, 503)
        job = cluster.client.submit(_qa(), lm="openai/m", question="down")
        with pytest.raises(ProviderUnavailableError, match="503"):
            job.result(timeout=30)
        assert len(server.requests) == 3
        [row] = cluster.client.executions(job.correlation_id)
        assert row.status == "failed"
        assert row.error is not None and row.error["type"] == "ProviderUnavailableError"
        assert row.error["context"]["attempts"] == 3
        assert [r["status"] for r in _lm_requests(cluster, job)] == ["ProviderUnavailableError"] * 3
    finally:
        cluster.stop()
        server.stop()


def test_provider_down_for_a_while_breaker_fallback_and_recovery(
    tmp_path: Path, sqlite_url: str
) -> None:
    reset = 2.0
    cluster, fallback_lm = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.0,
        DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="1",
        DSPYQ_PROVIDERS__OPENAI__BREAKER_FAIL_MAX="3",
        DSPYQ_PROVIDERS__OPENAI__BREAKER_RESET_TIMEOUT=str(reset),
        DSPYQ_CACHE__ENABLED="false",
    )
    primary = FakeLMServer(latency=0.0).start()  # "openai": down, then back
    cluster.env["DSPYQ_PROVIDERS__OPENAI__API_BASE"] = primary.openai_base
    try:
        primary.configure(error_rate=1.0, error_status=503)
        primary.answer_fields({"answer": "from openai"})
        fallback_lm.answer_fields({"answer": "from anthropic"})
        cluster.start_worker("openai", pool="openai", concurrency=2)
        cluster.start_worker("anthropic", pool="anthropic", concurrency=2)

        # Down for 6 s: jobs keep coming and all are answered by the fallback.
        down_until = time.monotonic() + 6.0
        jobs = []
        while time.monotonic() < down_until:
            jobs += cluster.client.map(
                _qa(),
                [{"question": f"d{len(jobs) + i}"} for i in range(3)],
                lm="openai/m",
                fallbacks=["anthropic/claude-test"],
            )
            time.sleep(0.5)
        assert [j.result(timeout=60).answer for j in jobs] == ["from anthropic"] * len(jobs)
        down_requests = len(primary.requests)
        # Without the breaker each job would have cost 2 requests; with it, the 3 that
        # open it (plus retries in flight) and about one probe per reset period.
        assert len(jobs) >= 30
        assert down_requests <= 3 * 2 + 4 + int(6.0 / reset) * 2, down_requests
        fallbacks = [e for e in _events(sqlite_url, "lm_fallback")]
        assert len(fallbacks) == len(jobs)
        assert {f["reason"] for f in fallbacks} <= {"ProviderUnavailableError", "CircuitOpenError"}

        # The provider comes back: after the reset timeout a probe closes the breaker.
        primary.configure(error_rate=0.0)
        time.sleep(reset + 0.5)
        back = [
            cluster.client.submit(
                _qa(), lm="openai/m", fallbacks=["anthropic/claude-test"], question=f"b{i}"
            )
            for i in range(4)
        ]
        answers = [j.result(timeout=30).answer for j in back]
        assert answers[-1] == "from openai"
        changes = [
            (c["from"], c["to"]) for c in _events(sqlite_url, "circuit_breaker_state_change")
        ]
        assert ("closed", "open") in changes
        assert changes[-1][1] == "closed", changes
    finally:
        cluster.stop()
        fallback_lm.stop()
        primary.stop()
