"""Network partitions between real processes: a TCP proxy between two parties is cut
for a while (its connections dropped, new ones refused), then restored. Nothing is
restarted; every job completes exactly once and is recorded once.

Results and the command that produced them: RELIABILITY.md. Each test takes up to a
minute (mark ``partition``: ``pytest -m "not partition"`` leaves them out).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

import dspyq
from dspyq.api_client import Client
from dspyq.errors import DspyqError, JobTimeoutError
from dspyq.settings import Settings
from dspyq.testing.chaos import audit_batch
from dspyq.testing.cluster import REDIS_URL, Cluster, make_cluster

pytestmark = [pytest.mark.integration, pytest.mark.partition]


VISIBILITY = 20
"""Seconds before Redis hands an unacknowledged job to another worker, in these tests."""


def _qa() -> dspyq.Predict:
    return dspyq.Predict("question -> answer")


def _redis_proxy() -> tuple[TcpProxy, str]:
    real = make_url(REDIS_URL)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 6379).start()
    return proxy, real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def _answers(cluster: Cluster, jobs: int) -> None:
    for i in range(jobs):
        cluster.fake_lm.answer_fields({"answer": f"A{i}"}, match=f"\\bQ{i}\\b")


def _settled(jobs: list[dspyq.Job], timeout: float) -> list[str | None]:
    """Each job's answer, or None for a job not finished ``timeout`` seconds from now."""
    deadline = time.monotonic() + timeout
    answers: list[str | None] = []
    for job in jobs:
        try:
            answers.append(job.result(timeout=max(0.1, deadline - time.monotonic())).answer)
        except JobTimeoutError:
            answers.append(None)
    return answers


def _worker_logs(tmp_path: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))


def _batch_across_cut(
    cluster: Cluster, proxy: TcpProxy, jobs_n: int, seconds: float
) -> tuple[list[dspyq.Job], list[str | None], float]:
    """Two workers run a batch; the proxy is cut for ``seconds`` once it is under way.
    The jobs, their answers (None: not finished 90 s after the cut ended) and how long
    after the cut the last one finished."""
    _answers(cluster, jobs_n)
    cluster.start_worker("w1", concurrency=2)
    cluster.start_worker("w2", concurrency=2)
    jobs = cluster.client.map(_qa(), [{"question": f"Q{i}"} for i in range(jobs_n)], lm="openai/m")
    assert jobs[2].result(timeout=30).answer == "A2"  # the batch is under way
    proxy.cut()
    time.sleep(seconds)
    proxy.restore()
    restored = time.monotonic()
    answers = _settled(jobs, timeout=90)
    return jobs, answers, time.monotonic() - restored


def _assert_each_job_once(database_url: str, cluster: Cluster, jobs: list[dspyq.Job]) -> int:
    """Every job succeeded and is recorded exactly once; no worker restarted. The rows."""
    audit = audit_batch(database_url, jobs)
    assert audit.problems == []
    assert audit.rows == audit.succeeded == audit.completes == len(jobs)
    assert all(p.poll() is None for p in cluster.workers.values())
    return audit.rows


def test_worker_redis_partition_of_ten_seconds_mid_batch(tmp_path: Path, postgres_url: str) -> None:
    jobs_n = 40
    proxy, proxied = _redis_proxy()
    # A job whose delivery was cut mid-run cannot be acknowledged; Redis hands it out
    # again once the visibility timeout has passed (the default is an hour).
    cluster, server = make_cluster(
        tmp_path, postgres_url, latency=0.3, DSPYQ_BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY)
    )
    # The workers reach Redis (broker, results, limiter, breaker, cache) through the
    # proxy; the client reaches it directly and keeps waiting on the results.
    cluster.env["DSPYQ_BROKER_URL"] = proxied
    try:
        jobs, answers, recovered = _batch_across_cut(cluster, proxy, jobs_n, 10)
        lost = [i for i, answer in enumerate(answers) if answer is None]
        print(f"worker<->redis cut 10 s: {len(lost)} of {jobs_n} jobs never delivered again")

        assert lost == []
        assert answers == [f"A{i}" for i in range(jobs_n)]
        rows = _assert_each_job_once(postgres_url, cluster, jobs)
        assert "Connection to broker lost" in _worker_logs(tmp_path)  # reported
        print(f"worker<->redis cut 10 s: rows {rows}, all done {recovered:.1f} s after restore")
    finally:
        cluster.stop()
        server.stop()
        proxy.stop()


def test_batch_taken_while_the_result_store_is_cut_runs_once_it_is_back(
    tmp_path: Path, postgres_url: str
) -> None:
    """The broker answers but Redis's other uses (results, limiter) do not: the batch's
    first Redis read fails. Failing would acknowledge the message and drop its jobs;
    it is requeued instead, and runs once Redis answers again."""
    jobs_n = 16  # eight batch messages of two
    proxy, proxied = _redis_proxy()
    cluster, server = make_cluster(tmp_path, postgres_url, latency=0.0)
    cluster.env["DSPYQ_REDIS_URL"] = proxied  # the workers' results; the broker direct
    try:
        _answers(cluster, jobs_n)
        cluster.start_worker("w1", concurrency=2)
        proxy.cut()
        inputs = [{"question": f"Q{i}"} for i in range(jobs_n)]
        jobs = cluster.client.map(_qa(), inputs, lm="openai/m")
        time.sleep(8)
        assert "requeued" in _worker_logs(tmp_path)
        proxy.restore()
        assert _settled(jobs, timeout=60) == [f"A{i}" for i in range(jobs_n)]
        _assert_each_job_once(postgres_url, cluster, jobs)
    finally:
        cluster.stop()
        server.stop()
        proxy.stop()


def test_single_jobs_taken_while_the_result_store_is_cut_run_once_it_is_back(
    tmp_path: Path, postgres_url: str
) -> None:
    """Celery stores a single job's STARTED state before the job's code runs: with Redis
    cut then, the delivery used to end as an internal error, acknowledged, and the job
    stayed "running" for ever. The worker's result backend retries instead."""
    jobs_n = 4
    proxy, proxied = _redis_proxy()
    cluster, server = make_cluster(tmp_path, postgres_url, latency=0.0)
    cluster.env["DSPYQ_REDIS_URL"] = proxied  # the workers' results; the broker direct
    try:
        _answers(cluster, jobs_n)
        cluster.start_worker("w1", concurrency=2)
        proxy.cut()
        jobs = [
            cluster.client.submit(_qa(), lm="openai/m", question=f"Q{i}") for i in range(jobs_n)
        ]
        time.sleep(6)
        assert "Retrying" in _worker_logs(tmp_path)
        proxy.restore()
        assert _settled(jobs, timeout=60) == [f"A{i}" for i in range(jobs_n)]
        _assert_each_job_once(postgres_url, cluster, jobs)
    finally:
        cluster.stop()
        server.stop()
        proxy.stop()


def test_worker_sql_partition_of_thirty_seconds(tmp_path: Path, postgres_url: str) -> None:
    jobs_n = 30
    real = make_url(postgres_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432).start()
    proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    cluster, server = make_cluster(tmp_path, proxied, latency=0.2)
    try:
        jobs, answers, recovered = _batch_across_cut(cluster, proxy, jobs_n, 30)

        assert answers == [f"A{i}" for i in range(jobs_n)]
        rows = _assert_each_job_once(postgres_url, cluster, jobs)
        logs = _worker_logs(tmp_path)
        assert "runs again" in logs  # jobs met the outage and said so
        print(
            f"worker<->sql cut 30 s: {jobs_n} jobs, 0 lost, rows {rows}, "
            f"re-sent {logs.count('runs again')} times, all done {recovered:.1f} s after restore"
        )
    finally:
        cluster.stop()
        server.stop()
        proxy.stop()


def test_client_broker_partition_while_mapping(tmp_path: Path, postgres_url: str) -> None:
    jobs_n = 1000
    proxy, proxied = _redis_proxy()
    cluster, server = make_cluster(tmp_path, postgres_url, latency=0.0)
    # This client publishes through the proxy; the workers reach Redis directly.
    client = Client(
        Settings(broker_url=proxied, key_prefix=cluster.prefix, database_url=postgres_url)
    )
    try:
        server.answer_fields({"answer": "ok"})
        cluster.start_worker("w1", concurrency=8)
        inputs = [{"question": f"Q{i}"} for i in range(jobs_n)]
        sent: list[dspyq.Job] = []
        errors: list[BaseException] = []

        def cut_soon() -> None:
            time.sleep(0.3)
            proxy.cut()
            time.sleep(3)
            proxy.restore()

        cutter = threading.Thread(target=cut_soon)
        cutter.start()
        started = time.monotonic()
        # What a caller does: map in chunks, and send a chunk again if the broker could
        # not take it (map raises a dspyq error naming the outage; nothing half-sent).
        for start in range(0, jobs_n, 100):
            chunk = inputs[start : start + 100]
            for _attempt in range(60):
                try:
                    sent += client.map(_qa(), chunk, lm="openai/m")
                    break
                except DspyqError as exc:
                    errors.append(exc)
                    time.sleep(0.5)
        cutter.join()
        mapped = time.monotonic() - started

        assert len(sent) == jobs_n
        assert [job.result(timeout=120).answer for job in sent] == ["ok"] * jobs_n
        audit = audit_batch(postgres_url, sent)
        assert audit.problems == []
        assert audit.rows == audit.succeeded == jobs_n
        print(
            f"client<->broker cut 3 s while mapping {jobs_n}: {len(errors)} map errors, "
            f"mapped in {mapped:.1f} s, 0 lost, rows {audit.rows}"
        )
    finally:
        client.close()
        cluster.stop()
        server.stop()
        proxy.stop()
