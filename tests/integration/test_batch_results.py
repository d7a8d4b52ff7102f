"""A batch job's state, as stored by dspyq.tasks.batch_results, reads exactly as what
Celery's own ``store_result`` stores: the same meta, the same AsyncResult."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery, states

from dspyq.settings import Settings
from dspyq.tasks.app import make_app
from dspyq.tasks.batch_results import JobResult, mark_started, result_meta, store_results


@pytest.fixture
def app(redis_url: str, prefix: str) -> Iterator[Celery]:
    celery = make_app(Settings(broker_url=redis_url, key_prefix=prefix))
    yield celery
    celery.close()


def _meta(app: Celery, client: redis.Redis, task_id: str) -> dict[str, Any]:
    raw = client.get(app.backend.get_key_for_task(task_id))
    assert raw is not None
    meta: dict[str, Any] = json.loads(raw)
    meta.pop("date_done")
    return meta


def test_a_stored_success_matches_celerys_own(app: Celery, client: redis.Redis) -> None:
    value = {"outputs": {"answer": "4"}, "lm_calls": 1}
    app.backend.store_result("by-celery", value, states.SUCCESS)
    store_results([JobResult(app, "by-dspyq", value)])

    ours, celerys = _meta(app, client, "by-dspyq"), _meta(app, client, "by-celery")
    assert ours == {**celerys, "task_id": "by-dspyq"}
    result = app.AsyncResult("by-dspyq")
    assert result.state == states.SUCCESS
    assert result.get(timeout=5) == value
    assert result.date_done is not None
    ttl = client.ttl(app.backend.get_key_for_task("by-dspyq"))
    assert 0 < ttl <= app.backend.expires


def test_started_matches_celerys_and_never_overwrites_a_success(
    app: Celery, client: redis.Redis
) -> None:
    app.backend.store_result("by-celery", None, states.STARTED)
    app.backend.store_result("done", {"x": 1}, states.SUCCESS)
    done_raw = client.get(app.backend.get_key_for_task("done"))
    mark_started(app.backend, [("by-dspyq", None), ("done", done_raw)])

    ours, celerys = _meta(app, client, "by-dspyq"), _meta(app, client, "by-celery")
    assert ours == {**celerys, "task_id": "by-dspyq"}
    assert app.AsyncResult("by-dspyq").state == states.STARTED
    assert app.AsyncResult("done").state == states.SUCCESS


def test_a_second_delivery_never_turns_a_success_back_to_started(
    app: Celery, client: redis.Redis
) -> None:
    """A batch delivered twice: both copies read the job's state (none yet), the first
    stores its success, then the second marks the job started from its stale read. The
    job must stay SUCCESS, or its client would wait on STARTED for ever."""
    key = app.backend.get_key_for_task("twice")
    read_by_a, read_by_b = client.get(key), client.get(key)
    assert read_by_a is None and read_by_b is None
    store_results([JobResult(app, "twice", {"outputs": {"answer": "ok"}})])
    mark_started(app.backend, [("twice", read_by_b)])

    assert _meta(app, client, "twice")["status"] == states.SUCCESS
    assert app.AsyncResult("twice").get(timeout=5) == {"outputs": {"answer": "ok"}}
    mark_started(app.backend, [("fresh", None)])  # a job not done yet is still marked
    assert 0 < client.ttl(app.backend.get_key_for_task("fresh")) <= app.backend.expires
    assert app.AsyncResult("fresh").state == states.STARTED


def test_a_result_whose_publish_was_missed_is_still_found(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    """A result stored while the client's subscription was down (its publish never
    delivered) is found by the waiting Job's next read of the stored state."""
    import threading
    import time

    from dspyq.api_client import Client
    from dspyq.api_client.job import RECHECK_S, Job

    dspyq_client = Client(Settings(broker_url=redis_url, key_prefix=prefix))
    try:
        job = Job(dspyq_client, "missed", "corr-missed")
        backend = dspyq_client.app.backend
        value = {"outputs": {"answer": "ok"}, "correlation_id": "corr-missed", "lm": "openai/m"}
        meta = backend.encode(result_meta(backend, "missed", states.SUCCESS, value))

        def store_silently() -> None:
            time.sleep(0.5)  # the Job is waiting by now
            client.set(backend.get_key_for_task("missed"), meta)  # no PUBLISH

        threading.Thread(target=store_silently).start()
        started = time.monotonic()
        assert job.result(timeout=RECHECK_S * 3).answer == "ok"
        assert time.monotonic() - started < RECHECK_S + 2
    finally:
        dspyq_client.close()
