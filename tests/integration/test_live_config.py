"""Settings changed with ``dspyq config`` reach running workers without a restart."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from click.testing import Result
from typer.testing import CliRunner

import dspyq
from dspyq.cli import app
from dspyq.events import Event
from dspyq.settings import Settings, reload_settings
from dspyq.store import EventStore, make_engine
from dspyq.testing.cluster import REDIS_URL, Cluster, running_cluster
from dspyq.workers.live_config import LiveConfigListener, LiveConfigStore

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    with running_cluster(tmp_path, sqlite_url, latency=0.0) as cluster:
        yield cluster


@pytest.fixture
def cli(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    """``dspyq config ...`` run in this process, with the cluster's environment."""
    for name, value in cluster.env.items():
        if name.startswith("DSPYQ_"):
            monkeypatch.setenv(name, value)
    reload_settings()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, ["config", *args])
    monkeypatch.undo()
    reload_settings()


def _events_of(cluster: Cluster, correlation_id: str, count: int, timeout: float) -> list[Event]:
    events = EventStore(make_engine(cluster.settings.database_url))
    deadline = time.monotonic() + timeout
    while True:
        found = events.by_correlation(correlation_id)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_rate_limit_changed_live_is_applied_by_two_running_workers(
    cluster: Cluster, cli: Callable[..., Result]
) -> None:
    cluster.fake_lm.answer_fields({"answer": "ok"})
    cluster.start_worker("w1", concurrency=2)
    cluster.start_worker("w2", concurrency=2)

    done = cli("set", "providers.openai.rate_limit", "2/s")
    assert done.exit_code == 0, done.stderr

    # The change and both workers applying it are events of one correlation id.
    trace = _events_of(cluster, "config-1", count=3, timeout=15)
    [changed] = [e for e in trace if e.event_type == "config_changed"]
    assert changed.data == {
        "key": "providers.openai.rate_limit",
        "value": "2/s",
        "action": "set",
        "version": 1,
    }
    applied = [e for e in trace if e.event_type == "config_applied"]
    assert len({e.pid for e in applied}) == 2
    assert all(e.data["keys"] == ["providers.openai.rate_limit"] for e in applied)

    # Both workers now space their requests half a second apart (the start
    # configuration allowed 100000/m).
    cluster.fake_lm.clear_requests()
    qa = dspyq.Predict("question -> answer")
    # One message per job (map may batch them), so both workers take some.
    jobs = [cluster.client.submit(qa, lm="openai/m", question=f"Q{i}") for i in range(6)]
    assert [job.result(timeout=60).answer for job in jobs] == ["ok"] * 6
    times = sorted(float(r["time"]) for r in cluster.fake_lm.requests)
    assert len(times) == 6
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Grants are >= 0.5 s apart; arrival jitter may eat some of it, the old limit all of it.
    assert min(gaps) >= 0.35, gaps
    engine = make_engine(cluster.settings.database_url)
    pids = {
        e.pid
        for job in jobs
        for e in EventStore(engine).by_correlation(job.correlation_id)
        if e.event_type == "module_execution_start"
    }
    assert len(pids) == 2  # both workers took jobs under the new limit


def test_secrets_and_invalid_values_are_refused_and_nothing_is_stored(
    cluster: Cluster, cli: Callable[..., Result]
) -> None:
    secret = cli("set", "providers.openai.api_key", "sk-live-change-987")
    assert secret.exit_code == 2
    assert "secret" in secret.stderr and "sk-live-change-987" not in secret.stderr
    url = cli("set", "database_url", "sqlite:///elsewhere.db")
    assert url.exit_code == 2 and "restart" in url.stderr
    invalid = cli("set", "providers.openai.rate_limit", "fast")
    assert invalid.exit_code == 2
    assert len(invalid.stderr.strip().splitlines()) == 1
    assert "N/s, N/m or N/h" in invalid.stderr
    r = redis.Redis.from_url(REDIS_URL)
    assert r.hlen(f"{cluster.prefix}:config:overrides") == 0

    assert cli("set", "cache.ttl", "120").exit_code == 0
    shown = cli("show", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert '"cache.ttl": 120' in shown.stdout
    assert '"providers.openai.api_key": "**********"' in shown.stdout
    assert "sk-planted-secret" not in shown.stdout
    assert cli("unset", "cache.ttl").exit_code == 0
    assert r.hlen(f"{cluster.prefix}:config:overrides") == 0


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_listener_follows_set_and_unset_and_keeps_its_own_environment_underneath(
    client: redis.Redis, prefix: str
) -> None:
    settings = Settings(providers={"openai": {"rate_limit": "7/s"}})
    changes: list[str] = []
    listener = LiveConfigListener(
        client, prefix, [settings], lambda: changes.append(settings.cache.ttl)
    ).start()
    store = LiveConfigStore(client, prefix)
    try:
        store.set(Settings(), "cache.ttl", "42")
        store.set(Settings(), "providers.openai.breaker_fail_max", "2")
        assert _wait_for(lambda: settings.providers["openai"].breaker_fail_max == 2)
        assert settings.cache.ttl == 42
        assert settings.providers["openai"].rate_limit == "7/s"  # its own value stays

        store.unset(Settings(), "cache.ttl")
        assert _wait_for(lambda: settings.cache.ttl == 3600)
        assert settings.providers["openai"].breaker_fail_max == 2
        assert changes[-1] == 3600

        # A later process gets the overrides when it starts, before any job.
        late = Settings()
        LiveConfigListener(client, prefix, [late]).refresh()
        assert late.providers["openai"].breaker_fail_max == 2
    finally:
        listener.stop()
