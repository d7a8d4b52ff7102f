"""Programs executed by real worker processes over real Redis and SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import dspyq
from dspyq.errors import AdapterParseError, InputError, JobCancelledError
from dspyq.store import EventStore, ExecutionStore, LMRequestStore, make_engine
from dspyq.testing.cluster import REDIS_URL, SECRET_KEY, Cluster, make_cluster, running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    with running_cluster(tmp_path, sqlite_url) as cluster:
        yield cluster


def _qa() -> dspyq.Predict:
    return dspyq.Predict("question -> answer")


def test_batch_through_two_workers(cluster: Cluster) -> None:
    for i in range(12):
        cluster.fake_lm.answer_fields({"answer": f"A{i}"}, match=f"Q{i}\\b")
    cluster.start_worker("w1", concurrency=2)
    cluster.start_worker("w2", concurrency=2)

    jobs = cluster.client.map(_qa(), [{"question": f"Q{i}"} for i in range(12)], lm="openai/m")
    answers = [job.result(timeout=60).answer for job in jobs]

    assert answers == [f"A{i}" for i in range(12)]
    engine = make_engine(cluster.settings.database_url)
    rows = ExecutionStore(engine).list(status="succeeded", limit=100)
    assert sorted(r.task_id for r in rows) == sorted(j.id for j in jobs)
    pids = {
        e.pid
        for job in jobs
        for e in EventStore(engine).by_correlation(job.correlation_id)
        if e.event_type == "module_execution_start"
    }
    assert len(pids) == 2  # both worker processes took jobs
    assert all(job.status == "succeeded" for job in jobs)


def test_events_trace_and_usage_are_recorded(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"reasoning": "r", "answer": "Paris"})
    cluster.start_worker("w1")
    job = cluster.client.submit(
        dspyq.ChainOfThought("question -> answer"), lm="openai/gpt-4o-mini", question="Capital?"
    )
    assert job.result(timeout=30).answer == "Paris"

    types = [e.event_type for e in cluster.client.events(job.correlation_id)]
    assert types[0] == "module_execution_start"
    assert types[-1] == "module_execution_complete"
    [row] = cluster.client.executions(job.correlation_id)
    assert row.status == "succeeded"
    assert row.input_tokens > 0 and row.output_tokens > 0 and row.cost_usd > 0
    assert row.outputs == {"reasoning": "r", "answer": "Paris"}


def test_inputs_are_validated_before_anything_is_enqueued(cluster: Cluster) -> None:
    with pytest.raises(InputError, match="question"):
        cluster.client.submit(_qa(), lm="openai/m", query="wrong field")
    with pytest.raises(dspyq.ConfigurationError, match="unknown provider"):
        cluster.client.submit(_qa(), lm="nosuch/m", question="q")
    queued = redis.Redis.from_url(REDIS_URL).llen(f"{cluster.prefix}:dspyq.lm.openai")
    assert queued == 0


def test_failed_job_raises_the_dspyq_error_it_failed_with(cluster: Cluster) -> None:
    cluster.fake_lm.answer("no markers and not JSON either")
    cluster.start_worker("w1")
    job = cluster.client.submit(_qa(), lm="openai/m", question="q")
    with pytest.raises(AdapterParseError) as info:
        job.result(timeout=30)
    assert info.value.correlation_id == job.correlation_id
    assert job.status == "failed"
    [row] = cluster.client.executions(job.correlation_id)
    assert row.status == "failed" and row.error["type"] == "AdapterParseError"


def test_lm_requests_are_recorded_once_with_the_job_for_success_and_failure(
    cluster: Cluster,
) -> None:
    """The worker holds a job's LM records back and writes them with the job's own end."""
    cluster.fake_lm.answer_fields({"answer": "fine"}, match="good question")
    cluster.fake_lm.answer("no markers and not JSON either", match="bad question")
    cluster.start_worker("w1")
    good = cluster.client.submit(_qa(), lm="openai/m", question="good question")
    assert good.result(timeout=30).answer == "fine"
    bad = cluster.client.submit(_qa(), lm="openai/m", question="bad question")
    with pytest.raises(AdapterParseError):
        bad.result(timeout=30)

    engine = make_engine(cluster.settings.database_url)
    events, lm_requests = EventStore(engine), LMRequestStore(engine)
    # Predict makes one call; a reply the chat adapter cannot parse is retried once as JSON.
    for job, calls, last in ((good, 1, "module_execution_complete"), (bad, 2, None)):
        trace = events.by_correlation(job.correlation_id)
        lm_events = [e for e in trace if e.event_type == "lm_request"]
        rows = lm_requests.by_correlation(job.correlation_id)
        assert len(lm_events) == calls
        assert len(rows) == calls
        assert {row.task_id for row in rows} == {job.id}
        assert sorted(row.request_id for row in rows) == sorted(
            str(e.data["request_id"]) for e in lm_events
        )
        assert all(row.input_tokens > 0 for row in rows)
        if last is not None:
            assert trace[-1].event_type == last
    [failed] = cluster.client.executions(bad.correlation_id)
    assert failed.status == "failed"
    assert events.count(correlation_id=bad.correlation_id, event_type="module_execution_error") == 1
    assert lm_requests.usage(task_id=bad.id).requests == 2
    assert len(cluster.fake_lm.requests) == 3


def test_multihop_runs_as_a_canvas_of_recorded_hops(cluster: Cluster) -> None:
    fake = cluster.fake_lm
    # Rules are tried in order; the synthesize prompt also names sub_questions.
    fake.answer_fields({"reasoning": "r", "answer": "Final"}, match="sub_answers")
    fake.answer_fields(
        {"reasoning": "two parts", "sub_questions": ["Who wrote X?", "When was Y born?"]},
        match="sub_questions",
    )
    fake.answer_fields({"reasoning": "r", "answer": "Ann"}, match="Who wrote X")
    fake.answer_fields({"reasoning": "r", "answer": "1900"}, match="When was Y born")
    cluster.start_worker("w1", concurrency=4)

    job = cluster.client.submit(dspyq.MultiHopQA(), lm="openai/m", question="Complex?")
    result = job.result(timeout=60)

    assert result.answer == "Final"
    assert result.sub_answers == ["Ann", "1900"]
    rows = cluster.client.executions(job.correlation_id)
    by_id = {r.task_id: r for r in rows}
    assert by_id[job.id].status == "succeeded"
    assert by_id[f"{job.id}:decompose"].parent_id == job.id
    hops = [r for r in rows if r.task_id not in {job.id, f"{job.id}:decompose"}]
    assert len(hops) == 2
    assert all(r.parent_id == job.id and r.status == "succeeded" for r in hops)


def test_api_key_never_leaves_the_worker(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"answer": "ok"})
    cluster.start_worker("w1")
    job = cluster.client.submit(_qa(), lm="openai/m", question="q")
    assert job.result(timeout=30).answer == "ok"
    assert cluster.fake_lm.requests[-1]["had_key"]

    assert SECRET_KEY not in cluster.redis_dump()
    engine = make_engine(cluster.settings.database_url)
    stored = repr(ExecutionStore(engine).list(limit=100)) + repr(
        EventStore(engine).by_correlation(job.correlation_id)
    )
    stored += repr(LMRequestStore(engine).by_correlation(job.correlation_id))
    assert SECRET_KEY not in stored
    assert SECRET_KEY not in cluster.log("w1")


def test_batch_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    cluster, server = make_cluster(tmp_path, postgres_url)
    try:
        server.answer_fields({"answer": "pg"})
        cluster.start_worker("w1")
        jobs = cluster.client.map(_qa(), [{"question": f"q{i}"} for i in range(5)], lm="openai/m")
        assert [j.result(timeout=60).answer for j in jobs] == ["pg"] * 5
        rows = ExecutionStore(make_engine(postgres_url)).list(status="succeeded")
        assert len(rows) == 5
    finally:
        cluster.stop()
        server.stop()


def test_cancelled_job_never_runs_even_if_no_worker_was_up(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"answer": "ok"})
    job = cluster.client.submit(_qa(), lm="openai/m", question="never asked")
    job.cancel()
    cluster.start_worker("w1")
    later = cluster.client.submit(_qa(), lm="openai/m", question="asked")
    assert later.result(timeout=30).answer == "ok"  # the queue has moved past the cancelled job

    with pytest.raises(JobCancelledError):
        job.result(timeout=5)
    assert job.status == "cancelled"
    asked = [m["content"] for r in cluster.fake_lm.requests for m in r["body"]["messages"]]
    assert not any("never asked" in text for text in asked)
    assert cluster.client.executions(job.correlation_id) == []
