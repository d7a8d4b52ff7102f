"""An open breaker costs nothing: real workers, real Redis, a failing fake provider.

The breaker is asked before the rate limiter, so jobs meeting an open breaker fail (or
move to their fallback) at once, spend no limiter budget and send nothing; a half-open
breaker lets exactly one probe of the whole pool reach the provider.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

import dspyq
from dspyq.errors import ProviderUnavailableError
from dspyq.resilience.ratelimit import RateLimiter
from dspyq.resilience.redis_client import redis_from_url
from dspyq.testing.cluster import Cluster, running_cluster

pytestmark = pytest.mark.integration

# The seed's default limit; before the breaker was asked first, 40 jobs needed ~52 s
# to learn, one limiter slot at a time, that the breaker was open.
SEED_RATE = "50/m"


def _qa() -> dspyq.Predict:
    return dspyq.Predict("question -> answer")


def _at_seed_rate(
    tmp_path: Path, sqlite_url: str, fail_max: int
) -> AbstractContextManager[Cluster]:
    """A deployment at the seed's rate limit whose breaker opens after ``fail_max``
    failures, without retries (each job's one request is its only one)."""
    return running_cluster(
        tmp_path,
        sqlite_url,
        latency=0.0,
        DSPYQ_PROVIDERS__OPENAI__RATE_LIMIT=SEED_RATE,
        DSPYQ_PROVIDERS__OPENAI__BREAKER_FAIL_MAX=str(fail_max),
        DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="0",
    )


def _open_breaker(cluster: Cluster, fail_max: int) -> None:
    for i in range(fail_max):
        job = cluster.client.submit(_qa(), lm="openai/m", question=f"opening {i}")
        with pytest.raises(ProviderUnavailableError):
            job.result(timeout=30)


def _limiter_requests(cluster: Cluster) -> int:
    limiter = RateLimiter(
        redis_from_url(cluster.redis_url), "openai", rate=SEED_RATE, key_prefix=cluster.prefix
    )
    return limiter.usage().requests


def _errors(jobs: list[dspyq.Job], timeout: float = 30) -> list[str]:
    names = []
    for job in jobs:
        try:
            job.result(timeout=timeout)
            names.append("succeeded")
        except Exception as exc:
            names.append(type(exc).__name__)
    return names


def test_forty_jobs_meeting_an_open_breaker_fail_in_seconds_and_send_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    with _at_seed_rate(tmp_path, sqlite_url, fail_max=3) as cluster:
        cluster.fake_lm.fail_next(1000, 500)
        cluster.start_worker("w1", concurrency=4)
        cluster.start_worker("w2", concurrency=4)
        _open_breaker(cluster, 3)
        spent = _limiter_requests(cluster)

        started = time.monotonic()
        jobs = cluster.client.map(_qa(), [{"question": f"q{i}"} for i in range(40)], lm="openai/m")
        errors = _errors(jobs)
        elapsed = time.monotonic() - started

        print(f"40 jobs at {SEED_RATE} with the breaker open: {elapsed:.2f} s")
        assert errors == ["CircuitOpenError"] * 40
        assert elapsed < 5.0
        assert len(cluster.fake_lm.requests) == 3  # only the failures that opened it
        assert _limiter_requests(cluster) == spent  # no budget spent on refused jobs
        for job in jobs[:5]:
            [row] = cluster.client.executions(job.correlation_id)
            assert row.status == "failed"
            assert row.error is not None and row.error["type"] == "CircuitOpenError"


def test_jobs_meeting_an_open_breaker_move_to_their_fallback_at_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    with _at_seed_rate(tmp_path, sqlite_url, fail_max=2) as cluster:
        server = cluster.fake_lm
        server.fail_next(2, 500)  # the primary's last two answers before the fallback's
        server.answer_fields({"answer": "from anthropic"})
        cluster.start_worker("openai", pool="openai", concurrency=4)
        cluster.start_worker("anthropic", pool="anthropic", concurrency=4)
        _open_breaker(cluster, 2)

        started = time.monotonic()
        jobs = cluster.client.map(
            _qa(),
            [{"question": f"q{i}"} for i in range(40)],
            lm="openai/m",
            fallbacks=["anthropic/claude-test"],
        )
        answers = [job.result(timeout=30).answer for job in jobs]
        elapsed = time.monotonic() - started

        print(f"40 jobs moved to the fallback past an open breaker: {elapsed:.2f} s")
        assert answers == ["from anthropic"] * 40
        assert elapsed < 10.0
        protocols = [r["protocol"] for r in server.requests]
        assert protocols.count("openai") == 2  # none of the 40 reached the open provider


def test_half_open_breaker_lets_one_probe_of_the_pool_through(
    tmp_path: Path, sqlite_url: str
) -> None:
    reset = 3.0
    with running_cluster(
        tmp_path,
        sqlite_url,
        latency=0.0,
        DSPYQ_PROVIDERS__OPENAI__BREAKER_FAIL_MAX="1",
        DSPYQ_PROVIDERS__OPENAI__BREAKER_RESET_TIMEOUT=str(reset),
        DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="0",
    ) as cluster:
        server = cluster.fake_lm
        server.fail_next(1, 500)
        cluster.start_worker("w1", concurrency=4)
        cluster.start_worker("w2", concurrency=4)
        _open_breaker(cluster, 1)

        # Half-open, provider still down and slow: 16 jobs on 8 slots, one probe.
        time.sleep(reset + 0.2)
        server.fail_next(1, 500, delay=1.5)
        server.clear_requests()
        errors = _errors(
            cluster.client.map(_qa(), [{"question": f"a{i}"} for i in range(16)], lm="openai/m")
        )
        assert len(server.requests) == 1
        assert sorted(errors) == ["CircuitOpenError"] * 15 + ["ProviderUnavailableError"]

        # The failed probe re-opened it for another reset timeout; then a slow, good probe
        # is again the only request until it closes the breaker for everyone.
        time.sleep(reset + 0.2)
        server.clear_requests()
        server.configure(latency=1.5)
        server.answer_fields({"answer": "up"})
        errors = _errors(
            cluster.client.map(_qa(), [{"question": f"b{i}"} for i in range(16)], lm="openai/m")
        )
        times = sorted(r["time"] for r in server.requests)
        assert errors.count("succeeded") >= 1
        assert "ProviderUnavailableError" not in errors
        assert all(t >= times[0] + 1.4 for t in times[1:])  # none while the probe ran
        server.configure(latency=0.0)
        jobs = cluster.client.map(_qa(), [{"question": f"c{i}"} for i in range(8)], lm="openai/m")
        assert _errors(jobs) == ["succeeded"] * 8  # closed for the whole pool
        print(f"half-open: 1 probe; after its success {len(times)} requests of 16 jobs")
