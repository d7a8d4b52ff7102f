"""The deployment pipeline on real SQL and Redis: steps and their events, failures that
leave the alias where it was, canaries, rollback, and bad input that changes nothing."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from deploy_fixtures import make_deployer, save_versions, scores_of
from sqlalchemy import Engine

from dspyq.deploy import STEPS, Deployer, alias_channel
from dspyq.errors import DeploymentError, InputError
from dspyq.settings import Settings
from dspyq.store.aliases import AliasStore
from dspyq.store.deployments import DeploymentStore
from dspyq.store.events import EventStore
from dspyq.store.programs import ProgramStore

pytestmark = pytest.mark.integration


@pytest.fixture
def deployer(store_engine: Engine, redis_url: str, prefix: str) -> Deployer:
    save_versions(store_engine, "qa", 3)
    return make_deployer(store_engine, redis_url, prefix)


@pytest.fixture
def announcements(redis_url: str, prefix: str) -> Iterator[redis.client.PubSub]:
    pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(alias_channel(prefix))
    pubsub.get_message(timeout=1.0)
    yield pubsub
    pubsub.close()


def _messages(pubsub: redis.client.PubSub) -> list[dict[str, Any]]:
    found = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        found.append(json.loads(message["data"]))
    return found


def _events(engine: Engine, correlation_id: str) -> list[tuple[str, str | None]]:
    return [
        (e.event_type, e.data.get("step"))
        for e in EventStore(engine).by_correlation(correlation_id)
    ]


def _target(engine: Engine) -> tuple[int, int | None, float | None] | None:
    row = AliasStore(engine).get("qa", "production")
    return None if row is None else (row.version, row.canary_version, row.canary_fraction)


def test_deploy_runs_every_step_moves_the_alias_and_announces_it(
    deployer: Deployer, store_engine: Engine, announcements: redis.client.PubSub
) -> None:
    deployment = deployer.deploy("qa")
    assert (deployment.name, deployment.alias, deployment.version) == ("qa", "production", 3)
    assert (deployment.previous_version, deployment.status) == (None, "succeeded")
    assert [s["step"] for s in deployment.steps] == list(STEPS)
    assert {s["status"] for s in deployment.steps} == {"complete"}
    assert deployment.steps[0]["result"]["pool"] == "local"
    assert _target(store_engine) == (3, None, None)
    assert _events(store_engine, deployment.correlation_id) == [
        ("dspy_deployment_started", None),
        *[("dspy_deployment_step_complete", step) for step in STEPS],
    ]
    assert [(m["event"], m["version"]) for m in _messages(announcements)] == [
        ("prepare", 3),
        ("moved", 3),
    ]
    second = deployer.deploy("qa", 1)
    assert (second.version, second.previous_version) == (1, 3)
    assert [d.version for d in deployer.history("qa")] == [1, 3]


def test_a_step_failing_names_itself_and_leaves_the_alias_where_it_was(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    save_versions(store_engine, "qa", 2)
    make_deployer(store_engine, redis_url, prefix).deploy("qa", 1)
    idle = make_deployer(store_engine, redis_url, prefix, live=lambda pool: 0)
    with pytest.raises(DeploymentError) as caught:
        idle.deploy("qa", 2)
    error = caught.value
    assert "failed at validate_resources" in error.message
    assert "no live worker serves pool 'local'" in error.message
    assert error.context["step"] == "validate_resources"
    assert _target(store_engine) == (1, None, None)
    assert _events(store_engine, error.correlation_id) == [
        ("dspy_deployment_started", None),
        ("dspy_deployment_step_failed", "validate_resources"),
    ]
    failed = DeploymentStore(store_engine).get(error.correlation_id)
    assert failed is not None and failed.status == "failed"
    assert failed.error is not None and failed.error["type"] == "ConfigurationError"


def test_a_program_whose_imports_are_not_allowed_fails_at_prepare_modules(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    save_versions(store_engine, "qa", 1)
    saved = ProgramStore(store_engine).get("qa", 1)
    assert saved is not None
    foreign = {**saved.spec, "kind": "json.decoder:JSONDecoder"}  # not under "myapp"
    ProgramStore(store_engine).save("qa", foreign["kind"], foreign)
    strict = Settings(key_prefix=prefix, allowed_imports=["myapp"])
    deployer = make_deployer(store_engine, redis_url, prefix, settings=strict)
    with pytest.raises(DeploymentError, match="failed at prepare_modules") as caught:
        deployer.deploy("qa")
    assert "json.decoder" in caught.value.message
    assert _target(store_engine) is None


def test_a_provider_without_credentials_fails_validation(
    store_engine: Engine, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    save_versions(store_engine, "qa", 1, lm="openai/gpt-4o-mini")
    with pytest.raises(DeploymentError, match="provider 'openai' has no credentials"):
        make_deployer(store_engine, redis_url, prefix).deploy("qa")
    keyed = Settings(key_prefix=prefix, providers={"openai": {"api_key": "sk-test"}})
    deployment = make_deployer(store_engine, redis_url, prefix, settings=keyed).deploy("qa")
    assert deployment.steps[0]["result"]["credentials"] == "api_key"
    assert "sk-test" not in json.dumps(deployment.steps)


def test_smoke_examples_run_on_the_new_version_and_must_reach_min_score(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    save_versions(store_engine, "qa", 2)
    poor = scores_of([0.2, 0.4])
    deployer = make_deployer(store_engine, redis_url, prefix, run_smoke=poor)
    deployer.deploy("qa", 1)
    examples = [{"question": "2+2?", "answer": "4"}]
    with pytest.raises(DeploymentError) as caught:
        deployer.deploy("qa", 2, smoke=examples, metric="m:exact", min_score=0.5)
    assert caught.value.context["step"] == "verify_deployment"
    assert "smoke score 0.30000000000000004 of qa:2 is below min_score 0.5" in caught.value.message
    assert poor.calls == [("qa:2", examples, "m:exact")]  # type: ignore[attr-defined]
    assert _target(store_engine) == (1, None, None)
    good = make_deployer(store_engine, redis_url, prefix, run_smoke=scores_of([0.9]))
    passed = good.deploy("qa", 2, smoke=examples, metric="m:exact", min_score=0.5)
    assert passed.steps[4]["result"] == {"smoke": 1, "score": 0.9, "min_score": 0.5}


def test_a_smoke_runner_that_raises_fails_verification(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    def broken(reference: str, examples: Any, metric: Any) -> float:
        raise RuntimeError("workers timed out")

    save_versions(store_engine, "qa", 1)
    deployer = make_deployer(store_engine, redis_url, prefix, run_smoke=broken)
    with pytest.raises(DeploymentError, match="failed at verify_deployment: workers timed out"):
        deployer.deploy("qa", smoke=[{"question": "q"}])
    assert _target(store_engine) is None


def test_a_deployment_overtaken_by_another_fails_at_enable_traffic(
    store_engine: Engine, redis_url: str, prefix: str
) -> None:
    save_versions(store_engine, "qa", 3)
    plain = make_deployer(store_engine, redis_url, prefix)
    plain.deploy("qa", 1)

    def overtaken(reference: str, examples: Any, metric: Any) -> None:
        plain.deploy("qa", 3)  # another deployment finishes while this one verifies

    slow = make_deployer(store_engine, redis_url, prefix, run_smoke=overtaken)
    with pytest.raises(DeploymentError) as caught:
        slow.deploy("qa", 2, smoke=[{"question": "q"}])
    assert caught.value.context["step"] == "enable_traffic"
    assert "moved by another deployment meanwhile" in caught.value.message
    assert _target(store_engine) == (3, None, None)


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"name": "qa", "version": 7}, r"version 7 is saved \(saved versions: \[1, 2, 3\]\)"),
        ({"name": "nope"}, r"No program named 'nope' is saved \(saved programs: qa\)"),
        ({"name": ""}, "non-empty string"),
        ({"name": "qa", "alias": ""}, "alias is empty"),
        ({"name": "qa", "version": "2"}, "whole number"),
        ({"name": "qa", "canary": 0.0}, "strictly between 0 and 1"),
        ({"name": "qa", "canary": 1.0}, "strictly between 0 and 1"),
        ({"name": "qa", "canary": -0.1}, "strictly between 0 and 1"),
        ({"name": "qa", "canary": math.nan}, "strictly between 0 and 1"),
        ({"name": "qa", "canary": True}, "fraction of traffic"),
        ({"name": "qa", "min_score": 0.5}, "needs smoke examples and a metric"),
        ({"name": "qa", "smoke": []}, "list is empty"),
        ({"name": "qa", "metric": "m:f"}, "without smoke examples"),
    ],
)
def test_bad_input_is_an_input_error_and_changes_nothing(
    deployer: Deployer, store_engine: Engine, arguments: dict[str, Any], complaint: str
) -> None:
    deployer.deploy("qa", 1)
    before = len(DeploymentStore(store_engine).history("qa"))
    events_before = EventStore(store_engine).count()
    with pytest.raises(InputError, match=complaint):
        deployer.deploy(**arguments)
    assert len(DeploymentStore(store_engine).history("qa")) == before
    assert EventStore(store_engine).count() == events_before
    assert _target(store_engine) == (1, None, None)


def test_a_canary_takes_a_share_then_is_promoted(deployer: Deployer, store_engine: Engine) -> None:
    with pytest.raises(InputError, match="serves no version yet"):
        deployer.deploy("qa", 2, canary=0.1)
    deployer.deploy("qa", 1)
    canary = deployer.deploy("qa", 2, canary=0.1)
    assert (canary.status, canary.previous_version, canary.canary_fraction) == ("canary", 1, 0.1)
    assert _target(store_engine) == (1, 2, 0.1)
    with pytest.raises(InputError, match="already runs a canary of version 2"):
        deployer.deploy("qa", 3, canary=0.2)
    promoted = deployer.promote("qa")
    assert (promoted.correlation_id, promoted.status) == (canary.correlation_id, "succeeded")
    assert promoted.steps[-1]["result"] == {"promoted": True}
    assert _target(store_engine) == (2, None, None)
    assert _events(store_engine, canary.correlation_id)[-2:] == [
        ("dspy_deployment_step_complete", "enable_traffic"),
        ("dspy_deployment_step_complete", "enable_traffic"),
    ]
    with pytest.raises(InputError, match="runs no canary"):
        deployer.promote("qa")


def test_a_canary_taken_back_records_why_and_the_figures(
    deployer: Deployer, store_engine: Engine
) -> None:
    deployer.deploy("qa", 1)
    canary = deployer.deploy("qa", 2, canary=0.5)
    measured = {"p95_ms": 7100.0, "current_p95_ms": 900.0, "samples": 40}
    aborted = deployer.abort_canary("qa", "production", "p95 above 5000 ms", measured)
    assert (aborted.correlation_id, aborted.status) == (canary.correlation_id, "failed")
    assert aborted.steps[-1]["error"] == {"reason": "p95 above 5000 ms", "measured": measured}
    assert _target(store_engine) == (1, None, None)
    last = EventStore(store_engine).by_correlation(canary.correlation_id)[-1]
    assert (last.event_type, last.data["step"]) == ("dspy_deployment_step_failed", "enable_traffic")
    assert last.data["error"]["measured"] == measured


def test_rollback_walks_back_through_the_versions_deployed(
    deployer: Deployer, store_engine: Engine
) -> None:
    for version in (1, 2, 3):
        deployer.deploy("qa", version)
    back = deployer.rollback("qa")
    assert (back.action, back.version, back.previous_version) == ("rollback", 2, 3)
    assert [s["step"] for s in back.steps] == list(STEPS)
    assert deployer.rollback("qa").version == 1
    with pytest.raises(InputError, match="no earlier version to roll back to"):
        deployer.rollback("qa")
    with pytest.raises(InputError, match="has no alias 'staging'"):
        deployer.rollback("qa", "staging")
    assert _target(store_engine) == (1, None, None)


def test_rollback_during_a_canary_takes_the_canary_back(
    deployer: Deployer, store_engine: Engine
) -> None:
    deployer.deploy("qa", 1)
    canary = deployer.deploy("qa", 2, canary=0.3)
    back = deployer.rollback("qa")
    assert (back.version, back.previous_version, back.status) == (1, 2, "succeeded")
    assert _target(store_engine) == (1, None, None)
    ended = DeploymentStore(store_engine).get(canary.correlation_id)
    assert ended is not None and ended.status == "failed"
    assert back.correlation_id in ended.steps[-1]["error"]["reason"]
