"""Self-repair on a real worker: DSPYQ_MAX_PARSE_RETRIES, recorded as parse_retry events."""

from __future__ import annotations

from pathlib import Path

import pytest

import dspyq
from dspyq.testing.cluster import make_cluster

pytestmark = pytest.mark.integration


def test_worker_repairs_a_malformed_reply_and_records_each_attempt(
    tmp_path: Path, sqlite_url: str
) -> None:
    cluster, server = make_cluster(tmp_path, sqlite_url, DSPYQ_MAX_PARSE_RETRIES="2")
    try:
        server.answer("no format at all", times=3)  # chat, JSON fallback, first repair
        server.answer_fields({"answer": "repaired"})
        cluster.start_worker("w1", concurrency=1)

        job = cluster.client.submit(
            dspyq.Predict("question -> answer"), lm="openai/m", question="q"
        )

        assert job.result(timeout=30).answer == "repaired"
        [row] = cluster.client.executions(job.correlation_id)
        assert row.status == "succeeded" and row.lm_calls == 4
        retries = [
            e for e in cluster.client.events(job.correlation_id) if e.event_type == "parse_retry"
        ]
        assert [(e.data["attempt"], e.data["outcome"]) for e in retries] == [
            (1, "failed"),
            (2, "parsed"),
        ]
        assert all(e.parent_id == job.id for e in retries)  # under the job's execution
    finally:
        cluster.stop()
        server.stop()


def test_the_submitters_configure_travels_with_the_job(tmp_path: Path, sqlite_url: str) -> None:
    cluster, server = make_cluster(tmp_path, sqlite_url)  # the worker's setting: 0
    try:
        server.answer("no format at all", match="first", times=2)
        server.answer_fields({"answer": "repaired"}, match="first")
        server.answer("no format at all", match="second")
        cluster.start_worker("w1", concurrency=1)
        qa = dspyq.Predict("question -> answer")

        with dspyq.context(max_parse_retries=1):
            repaired = cluster.client.submit(qa, lm="openai/m", question="first")
        plain = cluster.client.submit(qa, lm="openai/m", question="second")

        assert repaired.result(timeout=30).answer == "repaired"
        with pytest.raises(dspyq.AdapterParseError):
            plain.result(timeout=30)
        calls = [
            e for e in cluster.client.events(plain.correlation_id) if e.event_type == "lm_request"
        ]
        assert len(calls) == 2  # DSPy's two calls, no repair
    finally:
        cluster.stop()
        server.stop()
