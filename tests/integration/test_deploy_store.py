"""The production loop's tables on SQLite and PostgreSQL: aliases moved by compare-and-set,
deployment history, feedback tied to versions, alerts once per window, lineage."""

from __future__ import annotations

import math
from datetime import timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import TYPE_CHECKING, Any

import pytest
from alembic import command
from deploy_fixtures import record_execution, save_versions
from sqlalchemy import Engine, inspect
from store_fixtures import outcomes_of_processes_at_once

from dspyq.errors import InputError
from dspyq.store import ExecutionStore, init_db, make_engine
from dspyq.store.alerts import AlertStore
from dspyq.store.aliases import AliasMove, AliasStore
from dspyq.store.columns import utcnow
from dspyq.store.deployments import DeploymentStore
from dspyq.store.feedback import FeedbackStore
from dspyq.store.lineage import LineageStore
from dspyq.store.migrate import alembic_config
from dspyq.store.models import AlertRecord, DeploymentRecord
from dspyq.store.resolve import ProgramResolver, choose_version

if TYPE_CHECKING:
    from store_fixtures import ProcessContext

pytestmark = pytest.mark.integration


def _deployment(engine: Engine, deployment_id: str, version: int) -> str:
    DeploymentStore(engine).start(
        DeploymentRecord(id=deployment_id, name="qa", alias="production", version=version)
    )
    return deployment_id


def test_the_migration_downgrades_and_upgrades_again(store_engine: Engine) -> None:
    record_execution(store_engine, "job-1", "qa", 2)
    with store_engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003")
    tables = set(inspect(store_engine).get_table_names())
    assert not tables & {"program_aliases", "deployments", "feedback", "alerts", "program_lineage"}
    columns = {c["name"] for c in inspect(store_engine).get_columns("executions")}
    assert "program_version" not in columns
    init_db(store_engine)
    assert ExecutionStore(store_engine).get("job-1") is not None  # rows kept through both ways


def test_an_alias_moves_only_from_the_revision_the_mover_read(store_engine: Engine) -> None:
    save_versions(store_engine, "qa", 3)
    aliases = AliasStore(store_engine)
    first = aliases.move(
        "qa", "production", AliasMove(1, _deployment(store_engine, "d1", 1)), expected_revision=None
    )
    assert first is not None and (first.version, first.revision) == (1, 1)
    # A first move racing another first move, and a move from a stale revision, both lose.
    again = AliasMove(2, _deployment(store_engine, "d2", 2))
    assert aliases.move("qa", "production", again, expected_revision=None) is None
    assert aliases.move("qa", "production", again, expected_revision=7) is None
    assert DeploymentStore(store_engine).get("d2").status == "running"  # type: ignore[union-attr]
    step = {"step": "enable_traffic", "status": "complete"}
    moved = aliases.move(
        "qa", "production", AliasMove(2, "d2", step=step), expected_revision=first.revision
    )
    assert moved is not None and (moved.version, moved.revision, moved.deployment_id) == (
        2,
        2,
        "d2",
    )
    ended = DeploymentStore(store_engine).get("d2")
    assert ended is not None and ended.status == "succeeded" and ended.steps == [step]
    assert ended.finished_at is not None
    assert [a.alias for a in aliases.list("qa")] == ["production"]


def _in_child(url: str, task: str, argument: int, barrier: Barrier, results: Queue[Any]) -> None:
    """One competing process: prepare, wait for the others at ``barrier``, race, report."""
    engine = make_engine(url)
    try:
        results.put(_RACES[task](engine, argument, barrier))
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def _race_to_move(engine: Engine, version: int, barrier: Barrier) -> int | None:
    _deployment(engine, f"race-{version}", version)
    barrier.wait()
    move = AliasMove(version, f"race-{version}")
    moved = AliasStore(engine).move("qa", "production", move, expected_revision=1)
    return None if moved is None else moved.version


def _race_to_alert(engine: Engine, _: int, barrier: Barrier) -> bool:
    alert = _alert()
    barrier.wait()
    return AlertStore(engine).record(alert)


def test_of_deployments_racing_from_one_revision_exactly_one_wins(
    store_engine: Engine, store_url: str, process_context: ProcessContext
) -> None:
    save_versions(store_engine, "qa", 5)
    AliasStore(store_engine).move(
        "qa", "production", AliasMove(1, _deployment(store_engine, "d0", 1)), expected_revision=None
    )
    outcomes = outcomes_of_processes_at_once(
        process_context, _in_child, [(store_url, "move", v) for v in (2, 3, 4, 5)]
    )
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1 and winners[0] in (2, 3, 4, 5), outcomes
    final = AliasStore(store_engine).get("qa", "production")
    assert final is not None and (final.version, final.revision) == (winners[0], 2)
    statuses = {d.id: d.status for d in DeploymentStore(store_engine).history("qa")}
    assert statuses.pop(f"race-{winners[0]}") == "succeeded"
    assert statuses.pop("d0") == "succeeded"
    assert sorted(statuses.values()) == ["running", "running", "running"]


def test_feedback_is_tied_to_the_version_that_served_the_job(store_engine: Engine) -> None:
    record_execution(store_engine, "job-1", "qa", 2)
    record_execution(store_engine, "job-2")
    store = FeedbackStore(store_engine)
    first = store.record("job-1", 0.75, label="good", comment="right answer")
    second = store.record("job-2", 1)
    assert (first.program_name, first.program_version, first.score) == ("qa", 2, 0.75)
    assert (second.program_name, second.program_version, second.score) == (None, None, 1.0)
    assert [f.task_id for f in store.list(program_name="qa", program_version=2)] == ["job-1"]
    assert [f.id for f in store.list(job_id="job-2")] == [second.id]
    assert store.list(since=utcnow() + timedelta(seconds=5)) == []


@pytest.mark.parametrize(
    ("job_id", "score", "complaint"),
    [
        ("no-such-job", 1.0, "no job 'no-such-job' is recorded"),
        ("", 1.0, "needs a job id"),
        ("job-1", "0.5", "is a number"),
        ("job-1", None, "is a number"),
        ("job-1", True, "is a number"),
        ("job-1", math.nan, "must be finite"),
        ("job-1", math.inf, "must be finite"),
    ],
)
def test_feedback_on_an_unknown_job_or_with_a_bad_score_stores_nothing(
    store_engine: Engine, job_id: str, score: Any, complaint: str
) -> None:
    record_execution(store_engine, "job-1", "qa", 1)
    with pytest.raises(InputError, match=complaint):
        FeedbackStore(store_engine).record(job_id, score)
    assert FeedbackStore(store_engine).list() == []


def _alert(start_minute: int = 0, version: int = 2) -> AlertRecord:
    start = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=10 - start_minute)
    return AlertRecord(
        kind="module_execution_p95",
        observed=7200.0,
        threshold=5000.0,
        window_start=start,
        window_end=start + timedelta(minutes=5),
        program_name="qa",
        program_version=version,
        pool="openai",
        details={"executions": 40},
    )


def test_an_alert_is_stored_once_per_window(store_engine: Engine) -> None:
    alerts = AlertStore(store_engine)
    assert alerts.record(_alert()) is True
    assert alerts.record(_alert()) is False
    assert alerts.record(_alert(version=3)) is True
    assert alerts.record(_alert(start_minute=5)) is True
    stored = alerts.since()
    assert [(a.program_version, a.observed) for a in stored] == [
        (2, 7200.0),
        (3, 7200.0),
        (2, 7200.0),
    ]
    assert stored[0].details == {"executions": 40}
    assert alerts.since(utcnow() + timedelta(seconds=5)) == []
    assert len(alerts.since(program_name="qa")) == 3 and alerts.since(program_name="x") == []


def test_watchers_raising_one_window_s_alert_at_once_store_it_once(
    store_engine: Engine, store_url: str, process_context: ProcessContext
) -> None:
    outcomes = outcomes_of_processes_at_once(
        process_context, _in_child, [(store_url, "alert", 0)] * 4
    )
    assert sorted(outcomes, key=str) == [False, False, False, True]
    assert len(AlertStore(store_engine).since()) == 1


_RACES = {"move": _race_to_move, "alert": _race_to_alert}


def test_lineage_walks_back_through_parents(store_engine: Engine) -> None:
    save_versions(store_engine, "qa", 3)
    record_execution(store_engine, "job-1", "qa", 1)
    feedback = FeedbackStore(store_engine).record("job-1", 1.0)
    assert feedback.id is not None
    lineage = LineageStore(store_engine)
    assert lineage.record("qa", 2, parent_version=1, run_id="run-a", feedback_ids=[feedback.id])
    assert lineage.record("qa", 3, parent_version=2, run_id="run-b")
    assert not lineage.record("qa", 3, parent_version=1)  # an origin is recorded once
    chain = lineage.chain("qa", 3)
    assert [(link.version, link.parent_version, link.run_id) for link in chain] == [
        (3, 2, "run-b"),
        (2, 1, "run-a"),
        (1, None, None),
    ]
    assert chain[1].feedback_ids == [feedback.id]
    with pytest.raises(InputError, match=r"saved versions: \[1, 2, 3\]"):
        lineage.chain("qa", 9)
    with pytest.raises(InputError, match="must be an older version"):
        lineage.record("qa", 1, parent_version=2)


def test_references_resolve_or_name_what_is_saved(store_engine: Engine) -> None:
    save_versions(store_engine, "qa", 2)
    save_versions(store_engine, "summarize", 1)
    resolver = ProgramResolver(store_engine)
    assert (resolver.resolve("qa").version, resolver.resolve("qa:1").version) == (2, 1)
    assert "take 1" in str(resolver.resolve("qa:1").spec)
    with pytest.raises(
        InputError, match=r"qa' with version 5 is saved \(saved versions: \[1, 2\]\)"
    ):
        resolver.resolve("qa:5")
    with pytest.raises(InputError, match=r"No program named 'nope' is saved .*qa, summarize"):
        resolver.resolve("nope@production")
    with pytest.raises(InputError, match=r"no alias 'production' \(its aliases: none.*\[1, 2\]"):
        resolver.resolve("qa@production")


def test_a_canary_takes_its_fraction_of_jobs_and_each_job_keeps_its_choice(
    store_engine: Engine,
) -> None:
    save_versions(store_engine, "qa", 2)
    _deployment(store_engine, "d1", 1)
    AliasStore(store_engine).move(
        "qa",
        "production",
        AliasMove(1, "d1", canary_version=2, canary_fraction=0.2, status="canary"),
        expected_revision=None,
    )
    resolver = ProgramResolver(store_engine)
    jobs = [f"job-{n}" for n in range(2000)]
    served = [resolver.resolve("qa@production", job).version for job in jobs[:200]]
    assert served == [resolver.resolve("qa@production", job).version for job in jobs[:200]]
    target = resolver.target("qa", "production")

    share = sum(choose_version(target, job)[0] == 2 for job in jobs) / len(jobs)
    assert 0.17 < share < 0.23
    assert resolver.resolve("qa@production").version == 1  # no job id: the stable version
    assert resolver.resolve("qa@production", jobs[0]).canary == (served[0] == 2)
