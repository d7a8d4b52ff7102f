"""The worker chaos test on RabbitMQ with quorum queues: SIGKILLs lose and repeat nothing.

Same batch and killer as the Redis version (test_hardening_worker_chaos.py). RabbitMQ
hands a dead worker's unacknowledged jobs back as soon as its connection drops, so no
visibility timeout is involved.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dspyq.api_client import Client
from dspyq.testing.chaos import run_worker_chaos
from dspyq.testing.cluster import make_cluster

pytestmark = pytest.mark.integration


def test_random_sigkills_on_quorum_queues_lose_nothing_and_record_once(
    tmp_path: Path, sqlite_url: str, amqp_url: str
) -> None:
    cluster, server = make_cluster(
        tmp_path, sqlite_url, latency=0.6, broker_url=amqp_url, DSPYQ_BROKER__QUORUM_QUEUES="true"
    )
    # The submitting side declares the queues too: the same kind as the workers'.
    cluster.client.close()
    cluster.settings.broker.quorum_queues = True
    cluster.client = Client(cluster.settings)
    try:
        report = run_worker_chaos(
            cluster,
            150,
            workers=3,
            concurrency=2,
            kill_every=(1.0, 2.5),
            timeout=120,
            seed=6,
            submit_over=12.0,
        )
        listed = subprocess.run(
            ["rabbitmqctl", "list_queues", "name", "type", "arguments"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        [line] = [row for row in listed.splitlines() if row.startswith(f"{cluster.prefix}.lm.")]
        assert "quorum" in line and "x-delivery-limit" in line
        assert report.kills >= 2, report.kill_log
        assert report.wrong_answers == []
        assert report.audit.problems == []
        assert report.audit.rows == report.audit.succeeded == report.audit.completes == 150
        assert report.audit.redeliveries > 0  # jobs of killed workers were taken over
        print(f"kills={report.kills} redeliveries={report.audit.redeliveries} "
              f"seconds={report.seconds:.1f}")  # fmt: skip
    finally:
        cluster.stop()
        server.stop()
