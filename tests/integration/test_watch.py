"""The watcher on real SQL and Redis: thresholds crossed in a window become one alert and
one event however many watchers look, thresholds change live, canaries are judged."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis
from deploy_fixtures import make_deployer, save_versions
from sqlalchemy import Engine
from watch_fixtures import make_watcher, served

from dspyq.settings import Settings
from dspyq.store.alerts import AlertStore
from dspyq.store.aliases import AliasStore
from dspyq.store.deployments import DeploymentStore
from dspyq.store.engine import write_transaction
from dspyq.store.events import EventStore
from dspyq.store.models import OptimizationRunRecord
from dspyq.watch import PERFORMANCE_DEGRADATION
from dspyq.workers.live_config import LiveConfigStore

pytestmark = pytest.mark.integration

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_a_slow_version_raises_one_alert_and_one_event_per_window(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    served(store_engine, "qa", 2, at=NOW - timedelta(seconds=30), duration_ms=6000, count=6)
    served(store_engine, "qa", 1, at=NOW - timedelta(seconds=30), duration_ms=200, count=6)
    watcher = make_watcher(store_engine, redis_url, prefix)
    report = watcher.look(NOW)
    assert report.leader
    [alert] = report.alerts
    assert (alert.kind, alert.program_name, alert.program_version, alert.pool) == (
        "module_execution_p95",
        "qa",
        2,
        "openai",
    )
    assert (alert.observed, alert.threshold) == (6000.0, 5000.0)
    assert alert.window_end - alert.window_start == timedelta(seconds=300)
    [event] = EventStore(store_engine).by_correlation(f"alert-{alert.id}")
    assert event.event_type == PERFORMANCE_DEGRADATION
    assert (event.data["threshold"], event.data["observed"], event.data["version"]) == (
        "module_execution_p95",
        6000.0,
        2,
    )
    assert event.data["window_start"] == alert.window_start.isoformat()
    # The same degradation seen again inside its window is not a new alert.
    assert watcher.look(NOW + timedelta(seconds=20)).alerts == []
    assert [a.id for a in AlertStore(store_engine).since()] == [alert.id]


def test_lm_failures_above_the_rate_alert_and_few_samples_do_not(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    served(store_engine, "qa", 1, at=NOW - timedelta(seconds=5), count=10, lm_failures=2)
    served(store_engine, "other", 1, at=NOW - timedelta(seconds=5), count=2, lm_failures=2)
    [alert] = make_watcher(store_engine, redis_url, prefix).look(NOW).alerts
    assert (alert.kind, alert.program_name, alert.observed) == (
        "lm_request_failure_rate",
        "qa",
        0.2,
    )
    assert alert.details["lm_requests"] == 10


def test_several_watchers_at_once_raise_each_alert_once(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    served(store_engine, "qa", 1, at=NOW - timedelta(seconds=5), duration_ms=7000, count=5)
    watchers = [make_watcher(store_engine, redis_url, prefix) for _ in range(4)]
    reports: list[object] = []
    barrier = threading.Barrier(len(watchers))

    def look(index: int) -> None:
        barrier.wait()
        reports.append(watchers[index].look(NOW))

    threads = [threading.Thread(target=look, args=(i,)) for i in range(len(watchers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.leader for r in reports) == 1  # type: ignore[attr-defined]
    assert len(AlertStore(store_engine).since()) == 1
    assert EventStore(store_engine).count(event_type=PERFORMANCE_DEGRADATION) == 1
    # The leader's lock lapses with it: another watcher takes over.
    leader = next(w for w, r in zip(watchers, reports, strict=False) if r.leader)  # type: ignore[attr-defined]
    leader.lock.release()
    assert any(w.look(NOW).leader for w in watchers if w is not leader)


def test_a_threshold_changed_live_applies_at_the_next_look(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    served(store_engine, "qa", 1, at=NOW - timedelta(seconds=5), duration_ms=800, count=5)
    watcher = make_watcher(store_engine, redis_url, prefix)
    assert watcher.look(NOW).alerts == []
    LiveConfigStore(redis.Redis.from_url(redis_url), prefix).set(
        Settings(key_prefix=prefix), "watch.module_execution_p95_ms", "500"
    )
    [alert] = watcher.look(NOW).alerts
    assert (alert.observed, alert.threshold) == (800.0, 500.0)


def test_an_optimization_without_progress_for_ten_iterations_is_stagnant(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    scores = [0.5, 0.7] + [0.6] * 10
    candidates = [{"iteration": i, "seed": i, "score": s} for i, s in enumerate(scores)]
    run = OptimizationRunRecord(
        id="run1",
        correlation_id="c1",
        optimizer="COPRO",
        program="Predict",
        lm="openai/x",
        status="running",
        config={"run_name": "qa"},
        checkpoint={"candidates": candidates},
    )
    with write_transaction(store_engine, "write a run") as conn:
        conn.execute(OptimizationRunRecord.__table__.insert().values(**run.model_dump()))  # type: ignore[attr-defined]
    [alert] = make_watcher(store_engine, redis_url, prefix).look(NOW).alerts
    assert (alert.kind, alert.program_name, alert.observed, alert.threshold) == (
        "optimization_stagnation",
        "qa",
        10.0,
        10.0,
    )
    assert alert.details["run_id"] == "run1"


def test_traffic_stopped_alerts_only_when_switched_on(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    save_versions(store_engine, "qa", 1)
    make_deployer(store_engine, redis_url, prefix).deploy("qa")
    served(store_engine, "qa", 1, at=NOW - timedelta(seconds=400), count=3, lm="local/test-model")
    quiet = make_watcher(store_engine, redis_url, prefix)
    assert quiet.look(NOW).alerts == []
    quiet.lock.release()
    watcher = make_watcher(store_engine, redis_url, prefix, traffic_stopped=True)
    [alert] = watcher.look(NOW).alerts
    assert (alert.kind, alert.program_name, alert.pool) == ("traffic_stopped", "qa", "local")
    assert alert.details == {"alias": "production", "previous_executions": 3}


def _canary(engine: Engine, redis_url: str, prefix: str, **policy: float) -> str:
    save_versions(engine, "qa", 2)
    deployer = make_deployer(engine, redis_url, prefix)
    deployer.deploy("qa", 1)
    return deployer.deploy("qa", 2, canary=0.5, **policy).correlation_id  # type: ignore[arg-type]


def test_a_canary_doing_as_well_is_promoted_after_its_window(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    deployment_id = _canary(store_engine, redis_url, prefix, canary_window=2, min_samples=5)
    watcher = make_watcher(store_engine, redis_url, prefix)
    now = datetime.now(UTC)
    served(store_engine, "qa", 2, at=now + timedelta(seconds=1), count=5, duration_ms=120)
    served(store_engine, "qa", 1, at=now + timedelta(seconds=1), count=5, duration_ms=100)
    [early] = watcher.look(now + timedelta(seconds=1.5)).canaries
    assert early.action is None  # its window has not passed
    [verdict] = watcher.look(now + timedelta(seconds=3)).canaries
    assert verdict.action == "promoted" and verdict.reasons == []
    alias = AliasStore(store_engine).get("qa", "production")
    assert alias is not None and (alias.version, alias.canary_version) == (2, None)
    record = DeploymentStore(store_engine).get(deployment_id)
    assert record is not None and record.status == "succeeded"
    kinds = [
        (e.event_type, e.data.get("step"))
        for e in EventStore(store_engine).by_correlation(deployment_id)
    ]
    assert kinds[-1] == ("dspy_deployment_step_complete", "enable_traffic")


def test_a_canary_slower_than_the_stable_version_is_rolled_back_with_its_figures(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    deployment_id = _canary(store_engine, redis_url, prefix, canary_window=2, min_samples=5)
    watcher = make_watcher(store_engine, redis_url, prefix)
    now = datetime.now(UTC)
    served(store_engine, "qa", 2, at=now + timedelta(seconds=1), count=4, duration_ms=900)
    served(store_engine, "qa", 1, at=now + timedelta(seconds=1), count=5, duration_ms=100)
    [waiting] = watcher.look(now + timedelta(seconds=3)).canaries
    assert waiting.action is None  # 4 samples of the 5 it needs
    served(
        store_engine, "qa", 2, at=now + timedelta(seconds=2), count=1, duration_ms=900, score=0.1
    )
    report = watcher.look(now + timedelta(seconds=3))
    [verdict] = report.canaries
    assert verdict.action == "rolled_back"
    assert "p95 900 ms is above 1.5x the stable version's 100 ms" in verdict.reasons[0]
    alias = AliasStore(store_engine).get("qa", "production")
    assert alias is not None and (alias.version, alias.canary_version) == (1, None)
    record = DeploymentStore(store_engine).get(deployment_id)
    assert record is not None and record.status == "failed"
    failed = EventStore(store_engine).by_correlation(deployment_id)[-1]
    assert (failed.event_type, failed.data["step"]) == (
        "dspy_deployment_step_failed",
        "enable_traffic",
    )
    assert failed.data["error"]["measured"]["canary"]["p95_ms"] == 900.0
    assert failed.data["error"]["measured"]["stable"]["p95_ms"] == 100.0
    [alert] = [a for a in report.alerts if a.kind == "canary_rollback"]
    assert (alert.program_name, alert.program_version) == ("qa", 2)


def test_alerts_are_exported_to_prometheus(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    from prometheus_client import generate_latest

    from dspyq.telemetry.metrics import WorkerMetrics
    from dspyq.watch import Watcher

    served(store_engine, "qa", 4, at=NOW - timedelta(seconds=5), duration_ms=6500, count=5)
    metrics = WorkerMetrics()
    settings = Settings(key_prefix=prefix, watch={"interval_seconds": 1.0})
    watcher = Watcher(settings, store_engine, redis.Redis.from_url(redis_url), metrics=metrics)
    watcher.look(NOW)
    text = generate_latest(metrics.registry).decode()
    assert 'dspyq_alerts_total{kind="module_execution_p95",pool="openai",program="qa"} 1.0' in text
    assert (
        'dspyq_alert_observed{kind="module_execution_p95",pool="openai",program="qa",version="4"}'
        " 6500.0" in text
    )


def test_a_canary_policy_without_a_canary_or_below_zero_is_refused(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    from dspyq.errors import InputError

    save_versions(store_engine, "qa", 2)
    deployer = make_deployer(store_engine, redis_url, prefix)
    deployer.deploy("qa", 1)
    with pytest.raises(InputError, match="canary_window is given but no canary"):
        deployer.deploy("qa", 2, canary_window=10)
    with pytest.raises(InputError, match="min_samples must be positive"):
        deployer.deploy("qa", 2, canary=0.1, min_samples=0)
    alias = AliasStore(store_engine).get("qa", "production")
    assert alias is not None and (alias.version, alias.revision) == (1, 1)


def test_an_alert_starts_an_improvement_run_when_configured(
    sqlite_url: str, redis_url: str, prefix: str
) -> None:
    import time

    from dspyq.api_client import Client
    from dspyq.cli.watch import ImproveOnAlert
    from dspyq.watch import Watcher

    watch = {
        "interval_seconds": 1.0,
        "improve_on_alert": True,
        "improve_metric": "dspyq.metrics:answer_exact_match",
    }
    settings = Settings(
        key_prefix=prefix, broker_url=redis_url, database_url=sqlite_url, watch=watch
    )
    with Client(settings) as client:
        save_versions(client.engine, "qa", 1)
        make_deployer(client.engine, redis_url, prefix).deploy("qa")
        served(client.engine, "qa", 1, at=NOW - timedelta(seconds=5), duration_ms=6000, count=5)
        watcher = Watcher(
            settings,
            client.engine,
            redis.Redis.from_url(redis_url),
            on_alert=ImproveOnAlert(client),
        )
        [alert] = watcher.look(NOW).alerts
        events = EventStore(client.engine)
        deadline = time.monotonic() + 30
        while not events.count(event_type="real_time_adaptation_failed"):
            assert time.monotonic() < deadline, "no improvement run followed the alert"
            time.sleep(0.1)
        assert events.count(event_type="real_time_adaptation_start") == 1
        assert alert.program_name == "qa"


@pytest.mark.parametrize(("decision", "status"), [("promote", "succeeded"), ("rollback", "failed")])
def test_a_canary_short_of_its_samples_is_decided_at_its_max_wait_with_an_alert(
    store_engine: Engine, redis_url: str, prefix: str, decision: str, status: str
) -> None:
    deployment_id = _canary(
        store_engine, redis_url, prefix, canary_window=2, min_samples=5, canary_max_wait=4
    )
    watcher = make_watcher(store_engine, redis_url, prefix, canary_undersampled=decision)
    now = datetime.now(UTC)
    served(store_engine, "qa", 2, at=now + timedelta(seconds=1), count=2)
    served(store_engine, "qa", 1, at=now + timedelta(seconds=1), count=5)
    [waiting] = watcher.look(now + timedelta(seconds=3)).canaries
    assert waiting.action is None  # past its window, short of samples, before its max wait
    report = watcher.look(now + timedelta(seconds=5))
    [verdict] = report.canaries
    assert verdict.action == ("promoted" if decision == "promote" else "rolled_back")
    assert verdict.reasons == ["only 2 of the 5 canary executions needed to judge it within 4 s"]
    alias = AliasStore(store_engine).get("qa", "production")
    expected = 2 if decision == "promote" else 1
    assert alias is not None and (alias.version, alias.canary_version) == (expected, None)
    record = DeploymentStore(store_engine).get(deployment_id)
    assert record is not None and record.status == status
    last = EventStore(store_engine).by_correlation(deployment_id)[-1]
    assert last.data["step"] == "enable_traffic"
    if decision == "promote":
        assert last.event_type == "dspy_deployment_step_complete"
        assert last.data["result"]["undersampled"] is True
    else:
        assert last.event_type == "dspy_deployment_step_failed"
        assert "could not be judged" in last.data["error"]["reason"]
    [alert] = [a for a in report.alerts if a.kind == "canary_undersampled"]
    assert (alert.program_version, alert.observed, alert.threshold) == (2, 2.0, 5.0)
    assert alert.details["action"] == verdict.action


def test_a_canary_max_wait_shorter_than_its_window_is_refused(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    from dspyq.errors import InputError

    with pytest.raises(InputError, match="shorter than the canary's window"):
        _canary(store_engine, redis_url, prefix, canary_window=10, canary_max_wait=5)
    alias = AliasStore(store_engine).get("qa", "production")
    assert alias is not None and (alias.version, alias.canary_version) == (1, None)
