"""Workers SIGKILLed at random mid-batch and restarted: every job finishes, once.

The long version (1,000 jobs) is ``bench/chaos_workers.py``; its figures are in
BENCHMARKS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dspyq.testing.chaos import run_worker_chaos
from dspyq.testing.cluster import make_cluster

pytestmark = pytest.mark.integration

VISIBILITY_TIMEOUT = 5  # seconds before a dead worker's unacked jobs are redelivered


def test_random_sigkills_lose_nothing_and_record_once(tmp_path: Path, sqlite_url: str) -> None:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.6,
        DSPYQ_BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
    )
    cluster.settings.broker_visibility_timeout = VISIBILITY_TIMEOUT
    try:
        report = run_worker_chaos(
            cluster,
            150,
            workers=3,
            concurrency=2,
            kill_every=(1.0, 2.5),
            timeout=120,
            seed=6,
            submit_over=12.0,  # jobs keep arriving while workers die
        )
        assert report.kills >= 2, report.kill_log
        assert report.wrong_answers == []
        assert report.audit.problems == []
        assert report.audit.rows == report.audit.succeeded == report.audit.completes == 150
        assert report.audit.redeliveries > 0  # jobs of killed workers were taken over
    finally:
        cluster.stop()
        server.stop()
