"""Redis restarted mid-batch: workers and the client reconnect and the batch completes.

The broker is a private redis-server (the shared one on 6379 is never restarted) with
the persistence the compose file sets: an append-only file, fsynced on every write,
so queued jobs, unacknowledged deliveries and results written before the restart are
all there when Redis comes back.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from private_redis import PrivateRedis

import dspyq
from dspyq.errors import JobTimeoutError
from dspyq.testing.chaos import audit_batch
from dspyq.testing.cluster import make_cluster

pytestmark = pytest.mark.integration

VISIBILITY_TIMEOUT = 5
JOBS = 60


def test_batch_completes_across_a_redis_restart(tmp_path: Path, sqlite_url: str) -> None:
    broker = PrivateRedis(
        tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always", "--save", ""
    ).start()
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.3,
        redis_url=broker.url,
        DSPYQ_BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
    )
    cluster.settings.broker_visibility_timeout = VISIBILITY_TIMEOUT
    try:
        for i in range(JOBS):
            server.answer_fields({"answer": f"A{i}"}, match=f"\\bQ{i}\\b")
        cluster.start_worker("w1", concurrency=2)
        cluster.start_worker("w2", concurrency=2)
        jobs = cluster.client.map(
            dspyq.Predict("question -> answer"),
            [{"question": f"Q{i}"} for i in range(JOBS)],
            lm="openai/m",
        )
        assert jobs[5].result(timeout=30).answer == "A5"  # the batch is under way
        broker.restart(down_for=3.0)  # SIGTERM, 3 s without a broker, start again

        answers: list[str] = []
        deadline = time.monotonic() + 90
        for job in jobs:
            while True:  # the client's first wait may fail while its connection is retried
                try:
                    answers.append(job.result(timeout=max(1.0, deadline - time.monotonic())).answer)
                    break
                except JobTimeoutError:
                    raise
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        assert answers == [f"A{i}" for i in range(JOBS)]
        audit = audit_batch(sqlite_url, jobs)
        assert audit.problems == []
        assert audit.succeeded == JOBS
        # The workers came through the restart: they still answer and still run jobs.
        assert all(p.poll() is None for p in cluster.workers.values())
        late = cluster.client.submit(
            dspyq.Predict("question -> answer"), lm="openai/m", question="Q1"
        )
        assert late.result(timeout=30).answer == "A1"
    finally:
        cluster.stop()
        server.stop()
        broker.stop()
