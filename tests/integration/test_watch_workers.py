"""The watcher over what real workers recorded: a canary whose answers users score
worse than the stable version's is rolled back by the watcher on its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from watch_fixtures import client_on

import dspyq
from dspyq.api_client import Client
from dspyq.store.aliases import AliasStore
from dspyq.store.events import EventStore
from dspyq.testing.cluster import Cluster, make_cluster
from dspyq.watch import Watcher

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    cluster, server = make_cluster(tmp_path, sqlite_url, latency=0.0)
    try:
        cluster.start_worker("w1", concurrency=4)
        yield cluster
    finally:
        cluster.stop()
        server.stop()


@pytest.fixture
def client(cluster: Cluster, sqlite_url: str) -> Iterator[Client]:
    with client_on(cluster, sqlite_url, watch={"interval_seconds": 1.0}) as client:
        yield client


def test_a_canary_users_score_worse_is_rolled_back_by_the_watcher(
    cluster: Cluster, client: Client
) -> None:
    for take, answer in ((1, "good"), (2, "bad")):
        program = dspyq.Predict(
            dspyq.Signature("question -> answer").with_instructions(f"Answer, take {take}.")
        )
        program.lm = dspyq.LM("openai/m")
        client.save_program("qa", program)
        cluster.fake_lm.answer_fields({"answer": answer}, match=f"take {take}\\.")
    client.deploy("qa", 1)
    canary = client.deploy("qa", 2, canary=0.5, canary_window=1, min_samples=5)
    jobs = [client.submit("qa@production", question=f"q{n}") for n in range(30)]
    for job in jobs:
        client.feedback(job.id, 1.0 if job.result(timeout=60).answer == "good" else 0.0)
    time.sleep(1.5)  # the canary's window has passed, and the watcher's interval
    redis_client = redis.Redis.from_url(cluster.redis_url)
    [verdict] = Watcher(client.settings, client.engine, redis_client).look().canaries
    assert verdict.action == "rolled_back", verdict
    assert any("mean feedback score 0.000 is below" in r for r in verdict.reasons)
    assert verdict.measured["canary"]["executions"] >= 5
    alias = AliasStore(client.engine).get("qa", "production")
    assert alias is not None and (alias.version, alias.canary_version) == (1, None)
    last = EventStore(client.engine).by_correlation(canary.correlation_id)[-1]
    assert (last.event_type, last.data["step"]) == ("dspy_deployment_step_failed", "enable_traffic")
    assert [a.kind for a in client.alerts()] == ["canary_rollback"]
    after = client.submit("qa@production", question="again")
    assert after.result(timeout=60).answer == "good"
