"""A worker killed with SIGKILL mid-batch: nothing lost, nothing recorded twice."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

import dspyq
from dspyq.api_client import Job
from dspyq.store import EventStore, ExecutionStore, make_engine
from dspyq.testing.cluster import make_cluster

pytestmark = pytest.mark.integration

VISIBILITY_TIMEOUT = 6


def _started_by(engine: Engine, jobs: list[Job], pid: int) -> bool:
    events = EventStore(engine)
    return any(
        e.pid == pid and e.event_type == "module_execution_start"
        for job in jobs
        for e in events.by_correlation(job.correlation_id)
    )


def test_sigkill_mid_batch_loses_nothing_and_records_once(tmp_path: Path, sqlite_url: str) -> None:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.4,
        DSPYQ_BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
    )
    cluster.settings.broker_visibility_timeout = VISIBILITY_TIMEOUT
    try:
        for i in range(16):
            server.answer_fields({"answer": f"A{i}"}, match=f"Q{i}\\b")
        victim = cluster.start_worker("victim", concurrency=2)
        cluster.start_worker("survivor", concurrency=2)
        jobs = cluster.client.map(
            dspyq.Predict("question -> answer"),
            [{"question": f"Q{i}"} for i in range(16)],
            lm="openai/m",
        )
        engine = make_engine(sqlite_url)
        executions = ExecutionStore(engine)
        deadline = time.monotonic() + 30
        while not _started_by(engine, jobs, victim.pid):
            assert time.monotonic() < deadline, "the victim started no job"
            time.sleep(0.05)
        cluster.kill("victim")  # mid-job: its reserved messages are unacked
        cluster.start_worker("replacement", concurrency=2)

        answers = [job.result(timeout=120).answer for job in jobs]

        assert answers == [f"A{i}" for i in range(16)]
        rows = executions.list(limit=100)
        assert len(rows) == 16
        assert all(r.status == "succeeded" for r in rows)
        completes = Counter(
            e.data["task_id"]
            for job in jobs
            for e in EventStore(engine).by_correlation(job.correlation_id)
            if e.event_type == "module_execution_complete"
        )
        assert sorted(completes) == sorted(j.id for j in jobs)
        assert set(completes.values()) == {1}
        # The killed worker's jobs were taken over: some ran more than one attempt.
        assert any(r.attempts >= 2 for r in rows)
    finally:
        cluster.stop()
        server.stop()
