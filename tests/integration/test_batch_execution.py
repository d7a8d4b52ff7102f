"""Client.map's batches: several jobs per message, each still a job of its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import dspyq
from dspyq.errors import AdapterParseError, JobCancelledError
from dspyq.store import EventStore, ExecutionStore, make_engine
from dspyq.tasks.app import lm_queue
from dspyq.tasks.batch import batch_size
from dspyq.testing.cluster import REDIS_URL, Cluster, running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    with running_cluster(tmp_path, sqlite_url, latency=0.02) as cluster:
        yield cluster


def _qa() -> dspyq.Predict:
    return dspyq.Predict("question -> answer")


def _queued_messages(cluster: Cluster) -> int:
    return int(redis.Redis.from_url(REDIS_URL).llen(f"{cluster.prefix}:{lm_queue('openai')}"))


def test_batch_size_spreads_small_maps_and_caps_large_ones() -> None:
    assert batch_size(1, 20) == 1
    assert batch_size(12, 20) == 2  # at least 8 messages: a small map still spreads
    assert batch_size(40, 20) == 5
    assert batch_size(10_000, 20) == 20
    assert batch_size(10_000, 1) == 1


def test_a_map_travels_in_few_messages_and_every_job_is_its_own(cluster: Cluster) -> None:
    for i in range(40):
        cluster.fake_lm.answer_fields({"answer": f"A{i}"}, match=f"Q{i}\\b")
    jobs = cluster.client.map(_qa(), [{"question": f"Q{i}"} for i in range(40)], lm="openai/m")
    assert _queued_messages(cluster) == 8  # 40 jobs, 5 per message
    assert len({job.id for job in jobs}) == 40

    cluster.start_worker("w1", concurrency=2)
    assert [job.result(timeout=60).answer for job in jobs] == [f"A{i}" for i in range(40)]
    assert all(job.status == "succeeded" for job in jobs)
    engine = make_engine(cluster.settings.database_url)
    rows = ExecutionStore(engine).list(status="succeeded", limit=100)
    assert sorted(r.task_id for r in rows) == sorted(job.id for job in jobs)
    for job in jobs[:5]:
        types = [e.event_type for e in EventStore(engine).by_correlation(job.correlation_id)]
        assert types.count("module_execution_start") == 1
        assert types.count("module_execution_complete") == 1
        assert types.count("lm_request") == 1


def test_one_failing_job_does_not_fail_its_batch(cluster: Cluster) -> None:
    cluster.fake_lm.answer("no fields in this reply at all", match="broken")
    cluster.fake_lm.answer_fields({"answer": "fine"})
    questions = ["q0", "q1", "broken one", "q3", "q4", "q5", "q6", "q7", "q8", "q9"]
    jobs = cluster.client.map(_qa(), [{"question": q} for q in questions], lm="openai/m")
    cluster.start_worker("w1", concurrency=2)

    with pytest.raises(AdapterParseError):
        jobs[2].result(timeout=60)
    assert jobs[2].status == "failed"
    others = [job for i, job in enumerate(jobs) if i != 2]
    assert [job.result(timeout=60).answer for job in others] == ["fine"] * 9
    failed = ExecutionStore(make_engine(cluster.settings.database_url)).list(status="failed")
    assert [row.task_id for row in failed] == [jobs[2].id]


def test_a_cancelled_job_of_a_batch_never_runs(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"answer": "ok"})
    questions = [f"question {i}" for i in range(16)]
    jobs = cluster.client.map(_qa(), [{"question": q} for q in questions], lm="openai/m")
    jobs[3].cancel()
    cluster.start_worker("w1", concurrency=2)

    assert [job.result(timeout=60).answer for i, job in enumerate(jobs) if i != 3] == ["ok"] * 15
    with pytest.raises(JobCancelledError):
        jobs[3].result(timeout=10)
    asked = [m["content"] for r in cluster.fake_lm.requests for m in r["body"]["messages"]]
    assert not any("question 3\n" in text or text.endswith("question 3") for text in asked)
    assert len(cluster.fake_lm.requests) == 15


def test_jobs_of_a_batch_report_running_while_they_run(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"answer": "slow"})
    cluster.fake_lm.configure(latency=1.5)
    jobs = cluster.client.map(_qa(), [{"question": f"q{i}"} for i in range(16)], lm="openai/m")
    assert {job.status for job in jobs} == {"pending"}
    cluster.start_worker("w1", concurrency=8)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(job.status == "running" for job in jobs):
        time.sleep(0.05)
    assert any(job.status == "running" for job in jobs)
    assert [job.result(timeout=60).answer for job in jobs] == ["slow"] * 16
    assert {job.status for job in jobs} == {"succeeded"}


def test_concurrency_bounds_the_jobs_of_batches_at_once(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"answer": "ok"})
    cluster.fake_lm.configure(latency=0.3)
    jobs = cluster.client.map(_qa(), [{"question": f"q{i}"} for i in range(16)], lm="openai/m")
    cluster.start_worker("w1", concurrency=2)
    assert [job.result(timeout=60).answer for job in jobs] == ["ok"] * 16

    arrivals = sorted(r["time"] for r in cluster.fake_lm.requests)
    # Each call takes 0.3 s: with 2 slots, no 0.25-s window sees a third one arrive.
    busiest = max(sum(1 for t in arrivals if start <= t < start + 0.25) for start in arrivals)
    assert busiest <= 2
    assert arrivals[-1] - arrivals[0] >= 0.3 * (16 / 2 - 1) * 0.9


def test_a_worker_reserves_batches_by_their_jobs_not_by_messages(cluster: Cluster) -> None:
    """Concurrency 4 means about 4 jobs held, not 4 batch messages of 10 jobs each:
    the rest stays in the queue for the pool's other workers."""
    cluster.fake_lm.configure(latency=0.4)
    cluster.fake_lm.answer_fields({"answer": "ok"})
    jobs = cluster.client.map(_qa(), [{"question": f"q{i}"} for i in range(80)], lm="openai/m")
    assert _queued_messages(cluster) == 8  # 10 jobs per message
    cluster.start_worker("w1", concurrency=4)
    deadline = time.monotonic() + 30
    while not any(job.status == "running" for job in jobs):
        assert time.monotonic() < deadline, "no job started"
        time.sleep(0.05)
    time.sleep(0.5)  # time enough to fetch more messages, were the prefetch by message
    # One batch runs (its 10 jobs fill 4 slots) and at most one more was fetched before
    # the lowered prefetch took effect; by message count it would hold 4.
    assert _queued_messages(cluster) >= 6

    cluster.start_worker("w2", concurrency=4)
    assert [job.result(timeout=90).answer for job in jobs] == ["ok"] * 80
    # The second worker found work left in the queue.
    assert "dspyq.execute_batch" in (cluster.tmp_path / "worker-w2.log").read_text()


def test_a_batch_delivered_twice_leaves_every_job_succeeded_once(
    cluster: Cluster, sqlite_url: str
) -> None:
    """A publish sent again after its reply was lost: the same batch messages (same task
    ids) run twice at once. Every job ends SUCCESS in the result backend (never STARTED
    again afterwards) and is recorded once."""
    cluster.fake_lm.answer_fields({"answer": "once"})
    cluster.fake_lm.configure(latency=0.3)
    jobs = cluster.client.map(_qa(), [{"question": f"q{i}"} for i in range(8)], lm="openai/m")
    queue = f"{cluster.prefix}:{lm_queue('openai')}"
    broker = redis.Redis.from_url(REDIS_URL)
    messages = broker.lrange(queue, 0, -1)
    assert messages
    broker.rpush(queue, *messages)  # each batch message delivered twice
    cluster.start_worker("w1", concurrency=8)

    assert [job.result(timeout=60).answer for job in jobs] == ["once"] * 8
    time.sleep(2)  # both copies are done by now: a late STARTED would show
    assert {job.status for job in jobs} == {"succeeded"}
    rows = ExecutionStore(make_engine(sqlite_url))
    assert [getattr(rows.get(job.id), "status", None) for job in jobs] == ["succeeded"] * 8
