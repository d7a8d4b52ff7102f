"""Deployments against real workers: live pools found by Celery, smoke examples run on
the queue against the fake LM, and feedback on a job that really ran."""

from __future__ import annotations

import pytest
from deploy_fixtures import cluster, openai_program  # noqa: F401  (fixtures)

from dspyq.api_client import deployments
from dspyq.deploy import Deployer
from dspyq.errors import DeploymentError, InputError
from dspyq.metrics import answer_exact_match
from dspyq.settings import Settings
from dspyq.store.aliases import AliasStore
from dspyq.testing.cluster import Cluster

pytestmark = pytest.mark.integration


def _deployer(cluster: Cluster, sqlite_url: str) -> Deployer:
    # The deploying side knows the provider's key, as the workers' environment does.
    settings = Settings(
        broker_url=cluster.redis_url,
        key_prefix=cluster.prefix,
        database_url=sqlite_url,
        providers={"openai": {"api_key": "k", "api_base": cluster.fake_lm.openai_base}},
    )
    client = cluster.client
    return deployments.deployer(
        settings,
        client.engine,
        live_workers=deployments.live_workers_from(client.pools),
        run_smoke=deployments.smoke_runner(client.load_program, client.evaluate, timeout=60),
    )


def test_smoke_examples_run_on_the_pool_and_gate_the_move(
    cluster: Cluster, sqlite_url: str
) -> None:
    client = cluster.client
    client.save_program("qa", openai_program("Answer."))
    client.save_program("qa", openai_program("Answer badly."))
    deployer = _deployer(cluster, sqlite_url)
    with pytest.raises(DeploymentError, match="no live worker serves pool 'openai'"):
        deployer.deploy("qa", 1)

    cluster.start_worker("w1", concurrency=2)
    cluster.fake_lm.answer_fields({"answer": "4"}, match="Answer\\.")
    cluster.fake_lm.answer_fields({"answer": "five"}, match="Answer badly")
    smoke = [{"question": "2+2?", "answer": "4"}, {"question": "1+3?", "answer": "4"}]
    first = deployer.deploy("qa", 1, smoke=smoke, metric=answer_exact_match, min_score=100)
    assert first.steps[0]["result"]["live_workers"] == 1
    assert first.steps[4]["result"] == {"smoke": 2, "score": 100.0, "min_score": 100.0}

    with pytest.raises(DeploymentError) as caught:
        deployer.deploy("qa", 2, smoke=smoke, metric=answer_exact_match, min_score=50)
    assert caught.value.context["step"] == "verify_deployment"
    assert "smoke score 0.0 of qa:2 is below min_score 50.0" in caught.value.message
    alias = AliasStore(client.engine).get("qa", "production")
    assert alias is not None and alias.version == 1

    unscored = deployer.deploy("qa", 2, smoke=smoke)  # no metric: the examples must just run
    assert unscored.steps[4]["result"] == {"smoke": 2, "score": None}


def test_feedback_on_a_job_that_ran_and_on_one_that_did_not(cluster: Cluster) -> None:
    cluster.start_worker("w1", concurrency=2)
    cluster.fake_lm.answer_fields({"answer": "4"})
    job = cluster.client.submit(openai_program("Answer."), question="2+2?")
    assert job.result(timeout=60).answer == "4"
    stored = deployments.feedback(cluster.client.engine, job.id, 0.5, label="ok")
    assert (stored.task_id, stored.score, stored.label) == (job.id, 0.5, "ok")
    with pytest.raises(InputError, match="is recorded"):
        deployments.feedback(cluster.client.engine, "not-a-job", 1.0)
    with pytest.raises(InputError, match="is a number"):
        deployments.feedback(cluster.client.engine, job.id, "great")  # type: ignore[arg-type]
