"""Shared state on a Redis behind Sentinel: the master is SIGKILLed mid-batch.

Jobs go through RabbitMQ; results, limiter, breaker and caches live on
``sentinel://...`` Redis (master, one replica, three sentinels, all real). After the
kill, Sentinel promotes the replica within a few seconds, and every client (workers,
the submitting client, Celery's result backend) finds it through the sentinels.

What a failover can lose: replication is asynchronous, so writes the master took in
its last moments and had not yet sent to the replica are gone: limiter grants of that
instant (the limiter then allows slightly more in that window, never less). Job results
are not: a batch's results wait for a replica to hold them (``WAIT``) before its message
is acknowledged, and a job whose result write failed raised, was not acknowledged, and
ran again.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis
from sentinel_fixtures import SentinelSetup

from dspyq.core.predict import Predict
from dspyq.errors import RateLimitExceededError
from dspyq.resilience.gate import RedisProviderGate
from dspyq.resilience.redis_client import redis_from_url
from dspyq.settings import Settings
from dspyq.testing.chaos import audit_batch
from dspyq.testing.cluster import make_cluster

pytestmark = [pytest.mark.integration, pytest.mark.failover]

JOBS = 60
CALLS = 10


def _granted(gate: RedisProviderGate, calls: int) -> int:
    granted = 0
    for _ in range(calls):
        try:
            gate.run("openai", 0, lambda: None)
            granted += 1
        except RateLimitExceededError:
            pass
    return granted


def _gate(client: redis.Redis, prefix: str) -> RedisProviderGate:
    # One request a minute: a limiter that forgot a grant would give a second one.
    conf = {"api_base": "http://127.0.0.1:9/v1", "rate_limit": "1/m"}
    return RedisProviderGate(
        client, Settings(providers={"openai": conf}), key_prefix=prefix, max_inline_wait=0.0
    )


def test_master_killed_mid_batch_loses_no_job_and_the_limiter_stays_exact(
    tmp_path: Path, sqlite_url: str, amqp_url: str
) -> None:
    ha = SentinelSetup(tmp_path / "redis").start()
    cluster, server = make_cluster(
        tmp_path, sqlite_url, latency=0.15, redis_url=ha.url, broker_url=amqp_url
    )
    try:
        state = redis_from_url(ha.url)
        before = _gate(state, f"{cluster.prefix}:before")
        assert _granted(before, CALLS) == 1
        state.wait(1, 2000)  # the limiter's counts are on the replica before the kill

        for i in range(JOBS):
            server.answer_fields({"answer": f"A{i}"}, match=f"\\bQ{i}\\b")
        cluster.start_worker("ha", concurrency=4)
        program = Predict("question -> answer")
        jobs = cluster.client.map(
            program, [{"question": f"Q{i}"} for i in range(JOBS)], lm="openai/m"
        )
        killed = threading.Event()
        failover: list[float] = []

        def kill_when_a_third_is_done() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(server.requests) < JOBS // 3:
                time.sleep(0.02)
            ha.master.kill()
            killed.set()
            failover.append(ha.wait_failover())

        killer = threading.Thread(target=kill_when_a_third_is_done, daemon=True)
        killer.start()
        answers = [job.result(timeout=50).answer for job in jobs]
        killer.join(timeout=35)
        assert killed.is_set()
        assert failover and ha.master_port() == ha.replica.port

        assert answers == [f"A{i}" for i in range(JOBS)]  # 0 lost, each its own answer
        audit = audit_batch(sqlite_url, jobs)
        assert audit.problems == []
        assert audit.rows == audit.succeeded == JOBS

        # The grant taken before the kill survived it: the minute's budget is still spent.
        assert _granted(before, CALLS) == 0
        assert before.guards("openai").limiter.usage().requests == 1
        # The new master never ran the admission script: it is loaded again on first use
        # (NoScriptError), and a fresh limiter grants exactly its limit.
        state.script_flush()
        after = _gate(state, f"{cluster.prefix}:after")
        assert _granted(after, CALLS) == 1
        assert after.guards("openai").limiter.usage().requests == 1
        print(f"failover={failover[0]:.1f}s redeliveries={audit.redeliveries}")
    finally:
        cluster.stop()
        server.stop()
        ha.stop()


def test_a_redis_broker_behind_sentinel_runs_jobs(tmp_path: Path, sqlite_url: str) -> None:
    ha = SentinelSetup(tmp_path / "redis").start()
    cluster, server = make_cluster(tmp_path, sqlite_url, latency=0.0, redis_url=ha.url)
    try:
        assert cluster.settings.broker_url == ha.url  # queues, results and state all there
        server.answer_fields({"answer": "yes"})
        cluster.start_worker("onsentinel", concurrency=2)
        jobs = cluster.client.map(
            Predict("question -> answer"), [{"question": "q"}] * 5, lm="openai/m"
        )
        assert [job.result(timeout=30).answer for job in jobs] == ["yes"] * 5
        queues = redis.Redis(port=ha.master.port).keys(f"{cluster.prefix}:*")
        assert queues  # the jobs went through the master the sentinels name
    finally:
        cluster.stop()
        server.stop()
        ha.stop()
