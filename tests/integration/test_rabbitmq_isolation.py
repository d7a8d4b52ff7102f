"""Two deployments at once on one RabbitMQ and one Redis, told apart by key prefix only.

Each has its own workers and its own fake LM (answering with the deployment's name), so
a job taken by the other deployment's worker would come back with the wrong answer, or
never (its result would land under the other prefix).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import dspyq
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(tmp_path: Path, amqp_url: str) -> Iterator[tuple[Cluster, Cluster]]:
    clusters = []
    try:
        for name in ("east", "west"):
            (tmp_path / name).mkdir()
            cluster, server = make_cluster(
                tmp_path / name,
                f"sqlite:///{tmp_path / name / 'store.db'}",
                latency=0.02,
                broker_url=amqp_url,
            )
            server.answer_fields({"answer": f"from {name}"})
            clusters.append((cluster, server))
        for cluster, _ in clusters:
            cluster.start_worker("w", concurrency=2, wait=False)
        for cluster, _ in clusters:
            cluster.wait_ready("w")
        yield clusters[0][0], clusters[1][0]
    finally:
        for cluster, server in clusters:
            cluster.stop()
            server.stop()


def test_two_deployments_never_see_each_others_jobs_workers_or_pools(
    pair: tuple[Cluster, Cluster],
) -> None:
    east, west = pair
    qa = dspyq.Predict("question -> answer")
    jobs = {
        name: cluster.client.map(
            qa, [{"question": f"{name} {i}"} for i in range(20)], lm="openai/m"
        )
        for name, cluster in (("east", east), ("west", west))
    }
    for name, submitted in jobs.items():
        assert [job.result(timeout=60).answer for job in submitted] == [f"from {name}"] * 20
    assert len(east.fake_lm.requests) == len(west.fake_lm.requests) == 20

    for cluster in (east, west):
        pools = {status.pool: status for status in cluster.client.pools()}
        [worker] = pools["openai"].workers
        assert worker.name.startswith("w@")
        replies = cluster.client.app.control.ping(timeout=1.0)
        assert len(replies) == 1  # the other deployment's worker does not answer
        # A cancel mark lives under the deployment's prefix, like every other key.
        waiting = cluster.client.submit(qa, lm="local/m", question="never")
        waiting.cancel()
        store = redis.Redis.from_url(cluster.redis_url)
        assert store.exists(f"{cluster.prefix}:dspyq-cancelled-{waiting.id}")
        assert not store.exists(f"dspyq-cancelled-{waiting.id}")
        assert pools["openai"].queue == "dspyq.lm.openai"
        assert cluster.client.app.amqp.queues["dspyq.lm.openai"].name == (
            f"{cluster.prefix}.lm.openai"
        )
    # The waiting local jobs are each in their own deployment's queue.
    for cluster in (east, west):
        assert {s.pool: s for s in cluster.client.pools()}["local"].queued == 1
