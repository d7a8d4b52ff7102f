"""``dspyq pools`` and ``Client.pools()`` against real workers, Redis and SQL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import dspyq
from dspyq.errors import DspyqError, ProviderUnavailableError
from dspyq.resilience.breaker import CircuitBreaker
from dspyq.tasks.execute import EXECUTE_TASK
from dspyq.testing.cluster import REDIS_URL, Cluster, running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    with running_cluster(tmp_path, sqlite_url, latency=0.01) as cluster:
        yield cluster


def _open_breaker(cluster: Cluster, provider: str) -> None:
    breaker = CircuitBreaker(
        redis.Redis.from_url(REDIS_URL), provider, fail_max=1, key_prefix=cluster.prefix
    )

    def down() -> None:
        raise ProviderUnavailableError("down")

    with pytest.raises(ProviderUnavailableError):
        breaker.call(down)


def test_pools_show_workers_queues_breakers_limits_and_errors(cluster: Cluster) -> None:
    cluster.fake_lm.answer("no fields here at all", match="BROKEN")
    cluster.fake_lm.answer_fields({"answer": "yes"})
    cluster.start_worker("p1", concurrency=2)
    qa = dspyq.Predict("question -> answer")
    for question in ("a", "b"):
        assert cluster.client.submit(qa, lm="openai/m", question=question).result(timeout=30)
    with pytest.raises(DspyqError):
        cluster.client.submit(qa, lm="openai/m", question="BROKEN").result(timeout=30)
    # Nobody serves anthropic: its jobs wait, one of them on a priority list of its own.
    for question in ("c", "d", "e"):
        cluster.client.submit(qa, lm="anthropic/m", question=question)
    cluster.client.app.send_task(
        EXECUTE_TASK, kwargs={"request": {}}, queue="dspyq.lm.anthropic", priority=9
    )
    _open_breaker(cluster, "anthropic")

    statuses = {s.pool: s for s in cluster.client.pools(window_minutes=5, timeout=1.0)}

    openai = statuses["openai"]
    assert [w.name.split("@")[0] for w in openai.workers] == ["p1"]
    assert openai.workers[0].active_jobs == 0
    assert openai.queued == 0
    assert openai.breaker is not None and openai.breaker.state == "closed"
    assert openai.rate_limit is not None and openai.rate_limit.requests >= 3
    assert (openai.recent_executions, openai.recent_failures) == (3, 1)
    assert openai.error_rate == pytest.approx(1 / 3)

    anthropic = statuses["anthropic"]
    assert anthropic.workers == [] and anthropic.queued == 4 and anthropic.live
    assert anthropic.breaker is not None and anthropic.breaker.state == "open"
    assert statuses["optimize"].breaker is None and not statuses["optimize"].live

    # The command renders the same figures, as a table or as JSON.
    def dspyq_pools(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dspyq", "pools", *args],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    shown = dspyq_pools("--json")
    assert shown.returncode == 0, shown.stderr
    rows = {row["pool"]: row for row in json.loads(shown.stdout)}
    assert set(rows) == {"openai", "anthropic"}  # live pools only
    assert rows["anthropic"]["queued"] == 4
    assert rows["anthropic"]["breaker"]["state"] == "open"
    assert rows["openai"]["recent_failures"] == 1
    assert 0 < rows["openai"]["rate_limit"]["utilization"] < 1

    table = dspyq_pools("--all")
    assert table.returncode == 0, table.stderr
    for text in ("openai", "anthropic", "optimize", "p1@", "open", "33%"):
        assert text in table.stdout


def test_pools_report_an_unreachable_redis_in_one_line(cluster: Cluster) -> None:
    env = {**cluster.env, "DSPYQ_BROKER_URL": "redis://127.0.0.1:1/0"}
    result = subprocess.run(
        [sys.executable, "-m", "dspyq", "pools", "--timeout", "0.2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error:")
    assert "Traceback" not in result.stderr
