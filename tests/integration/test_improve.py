"""``client.improve`` on real workers, Redis and SQL: too little feedback and a candidate
that is not better change nothing and say why; bad input is refused before anything runs.
(The run that does improve, deploy a canary and get promoted is examples/production_loop.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from watch_fixtures import client_on

import dspyq
from dspyq.api_client import Client
from dspyq.core.program import program_to_spec
from dspyq.errors import InputError
from dspyq.optimize.adaptive import program_fingerprint
from dspyq.store.events import EventStore
from dspyq.tasks.adaptive_history import SQLOptimizationHistory
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration

METRIC = "dspyq.metrics:answer_exact_match"


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    cluster, server = make_cluster(tmp_path, sqlite_url, latency=0.0)
    try:
        cluster.start_worker("lm", pool="openai", concurrency=4)
        cluster.start_worker("opt", pool="optimize", concurrency=2)
        yield cluster
    finally:
        cluster.stop()
        server.stop()


@pytest.fixture
def client(cluster: Cluster, sqlite_url: str) -> Iterator[Client]:
    with client_on(cluster, sqlite_url) as client:
        yield client


def _served_with_feedback(client: Client, count: int) -> None:
    jobs = [client.submit("qa@production", question=f"question {n}") for n in range(count)]
    for job in jobs:
        job.result(timeout=60)
        client.feedback(job.id, 1.0)


def spec_of(program: dspyq.Module) -> dict[str, object]:
    return program_to_spec(program).model_dump(mode="json")


def _adaptation_events(client: Client, correlation_id: str) -> list[tuple[str, str | None]]:
    return [
        (e.event_type, e.data.get("reason"))
        for e in EventStore(client.engine).by_correlation(correlation_id)
    ]


def test_improve_changes_nothing_without_enough_feedback_or_a_better_candidate(
    cluster: Cluster, client: Client
) -> None:
    cluster.fake_lm.answer_fields({"answer": "same"})
    program = dspyq.Predict("question -> answer")
    program.lm = dspyq.LM("openai/m")
    client.save_program("qa", program)
    client.deploy("qa")
    _served_with_feedback(client, 6)

    thin = client.improve("qa", metric=METRIC, min_feedback=10)
    assert (thin.status, thin.version) == ("unchanged", None)
    assert "has 6 feedback rows and an improvement needs min_feedback=10" in thin.reason
    assert _adaptation_events(client, thin.correlation_id) == [
        ("real_time_adaptation_start", None),
        ("real_time_adaptation_failed", thin.reason),
    ]

    _served_with_feedback(client, 12)  # 12 distinct questions, each answered the same way
    flat = client.improve("qa", metric=METRIC, min_feedback=10)
    assert flat.status == "unchanged", flat.reason
    assert flat.run_id is not None and flat.optimizer == "AdaptiveOptimizer:BootstrapFewShot"
    assert (flat.current_score, flat.candidate_score) == (100.0, 100.0)
    assert "not better by more than min_gain=0" in flat.reason
    assert [r.version for r in client.list_programs("qa")] == [1]  # nothing saved
    assert [d.version for d in client.deployments("qa")] == [1]  # nothing deployed
    assert _adaptation_events(client, flat.correlation_id)[-1] == (
        "real_time_adaptation_failed",
        flat.reason,
    )
    # The AdaptiveOptimizer saw bootstrapping gain nothing here: next time it falls back.
    history = SQLOptimizationHistory(client.engine).entries(program_fingerprint(spec_of(program)))
    assert [(h.optimizer, h.gain) for h in history] == [("BootstrapFewShot", 0.0)]
    assert dspyq.AdaptiveOptimizer(METRIC).choose(12, history).strategy == "COPRO"


def test_bad_input_to_improve_is_refused_before_anything_runs(
    cluster: Cluster, client: Client
) -> None:
    program = dspyq.Predict("question -> answer")
    program.lm = dspyq.LM("openai/m")
    client.save_program("qa", program)
    client.deploy("qa")
    with pytest.raises(InputError, match="canary must be strictly between 0 and 1"):
        client.improve("qa", metric=METRIC, canary=2.0)
    with pytest.raises(InputError, match="module-level function"):
        client.improve("qa", metric=42)
    with pytest.raises(InputError, match="min_feedback"):
        client.improve("qa", metric=METRIC, min_feedback=0)
    with pytest.raises(InputError):
        client.improve("nope", metric=METRIC)
    assert EventStore(client.engine).count(event_type="real_time_adaptation_start") == 0
