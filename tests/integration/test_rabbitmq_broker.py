"""Every feature with RabbitMQ as the broker and Redis for shared state, real workers.

One deployment for the module (an ``openai`` worker and an ``optimize`` worker on
AMQP, results, limiter, breaker, caches and pub/sub on Redis); each test acts on it
as a user would, through the client or the ``dspyq`` command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import dspyq
from dspyq.api_client import deployments
from dspyq.errors import ConfigurationError, JobCancelledError
from dspyq.metrics import answer_exact_match
from dspyq.settings import Settings
from dspyq.store import EventStore, make_engine
from dspyq.store.aliases import AliasStore
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration

PROGRAMS = """
import dspyq

qa = dspyq.Predict("question -> answer")
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, amqp_url: str) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("rabbitmq")
    cluster, server = make_cluster(
        tmp, f"sqlite:///{tmp / 'store.db'}", latency=0.01, broker_url=amqp_url
    )
    (tmp / "amqp_programs.py").write_text(PROGRAMS)
    cluster.env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    server.answer_fields({"reasoning": "r", "answer": "Final"}, match="sub_answers")
    server.answer_fields(
        {"reasoning": "two parts", "sub_questions": ["Who wrote X?", "When was Y born?"]},
        match="sub_questions",
    )
    server.answer_fields({"reasoning": "r", "answer": "Ann"}, match="Who wrote X")
    server.answer_fields({"reasoning": "r", "answer": "1900"}, match="When was Y born")
    for i in range(10):
        server.answer_fields({"answer": f"A{i}"}, match=f"\\bQ{i}\\b")
    server.answer_fields({"answer": "Paris"})
    try:
        cluster.start_worker("lm", concurrency=4, wait=False)
        cluster.start_worker("coordinator", pool="optimize", concurrency=1, wait=False)
        cluster.wait_ready("lm")
        cluster.wait_ready("coordinator")
        yield cluster
    finally:
        cluster.stop()
        server.stop()


def run_cli(cluster: Cluster, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dspyq", *args],
        cwd=cluster.tmp_path,
        env={**cluster.env, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def qa() -> dspyq.Predict:
    return dspyq.Predict("question -> answer")


def test_submit_map_multihop_and_stream_run_on_amqp(cluster: Cluster) -> None:
    client = cluster.client
    assert client.submit(qa(), lm="openai/m", question="Capital?").result(timeout=30).answer == (
        "Paris"
    )
    jobs = client.map(qa(), [{"question": f"Q{i}"} for i in range(10)], lm="openai/m")
    assert [job.result(timeout=60).answer for job in jobs] == [f"A{i}" for i in range(10)]

    hop = client.submit(dspyq.MultiHopQA(), lm="openai/m", question="Complex?")
    result = hop.result(timeout=60)
    assert (result.answer, result.sub_answers) == ("Final", ["Ann", "1900"])
    assert len(client.executions(hop.correlation_id)) == 4  # root, decompose, two hops

    *chunks, prediction = list(client.stream(qa(), lm="openai/m", question="Streamed?", timeout=30))
    assert prediction.answer == "Paris"
    assert "Paris" in "".join(chunk.text for chunk in chunks)


def test_evaluate_and_optimize_fan_out_on_amqp(cluster: Cluster) -> None:
    devset = [
        dspyq.Example(question=f"Q{i}", answer=f"A{i}").with_inputs("question") for i in range(6)
    ]
    scored = cluster.client.evaluate(
        qa(), devset, metric=answer_exact_match, lm="openai/m", display_progress=False
    )
    assert scored.score == 100.0

    run = cluster.client.optimize(
        dspyq.BootstrapFewShot(metric=answer_exact_match, max_bootstrapped_demos=2),
        qa(),
        trainset=devset[:4],
        valset=devset[4:],
        lm="openai/m",
        run_name="amqp-qa",
    )
    assert run.wait(timeout=90) == "succeeded"
    demos = run.result().predictors()[0].demos
    assert len(demos) == 4 and getattr(demos[0], "augmented", False)  # bootstrapped on the pool
    assert [r.version for r in cluster.client.list_programs("amqp-qa")] == [1]


def test_a_cancelled_job_never_runs(cluster: Cluster) -> None:
    # No worker serves anthropic yet: the job waits in its RabbitMQ queue.
    job = cluster.client.submit(qa(), lm="anthropic/m", question="never asked")
    job.cancel()
    cluster.start_worker("late", pool="anthropic", concurrency=1)
    later = cluster.client.submit(qa(), lm="anthropic/m", question="asked")
    assert later.result(timeout=30).answer == "Paris"
    with pytest.raises(JobCancelledError):
        job.result(timeout=5)
    assert job.status == "cancelled"
    assert cluster.client.executions(job.correlation_id) == []
    cluster.kill("late")


def test_cli_run_submit_optimize_and_pools_work_on_amqp(cluster: Cluster) -> None:
    ran = json_of(run_cli(cluster, "run", "question -> answer", "--question", "Capital?",
                          "--lm", "openai/m", "--json"))  # fmt: skip
    assert ran["outputs"]["answer"] == "Paris"
    submitted = json_of(run_cli(cluster, "submit", "question -> answer", "--question", "Q3",
                                "--lm", "openai/m", "--json"))  # fmt: skip
    job = cluster.client.job(submitted["job_id"], submitted["correlation_id"])
    assert job.result(timeout=30).answer == "A3"

    train = cluster.tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"question": f"Q{i}", "answer": f"A{i}"}) + "\n"
                             for i in range(3)))  # fmt: skip
    optimized = json_of(run_cli(cluster, "optimize", "labeled-few-shot", "amqp_programs:qa",
                                "--trainset", str(train), "--lm", "openai/m", "-o", "k=2",
                                "--name", "amqp-cli", "--wait", "--json"))  # fmt: skip
    assert optimized["status"] == "succeeded"

    rows = {row["pool"]: row for row in json_of(run_cli(cluster, "pools", "--json"))}
    assert [w["name"].split("@")[0] for w in rows["openai"]["workers"]] == ["lm"]
    assert [w["name"].split("@")[0] for w in rows["optimize"]["workers"]] == ["coordinator"]
    assert rows["openai"]["queue"] == "dspyq.lm.openai" and rows["openai"]["queued"] == 0
    statuses = {status.pool: status for status in cluster.client.pools()}
    assert statuses["openai"].rate_limit is not None
    assert statuses["openai"].rate_limit.requests > 0  # read from Redis, not the broker


def test_jobs_waiting_in_rabbitmq_are_counted_by_the_pools_view(cluster: Cluster) -> None:
    jobs = [cluster.client.submit(qa(), lm="local/m", question=f"wait {i}") for i in range(3)]
    statuses = {status.pool: status for status in cluster.client.pools()}
    assert statuses["local"].queued == 3 and statuses["local"].workers == []
    for job in jobs:
        job.cancel()


def test_live_config_reaches_workers_on_amqp(cluster: Cluster) -> None:
    changed = run_cli(cluster, "config", "set", "providers.openai.rate_limit", "90000/m")
    assert changed.returncode == 0, changed.stderr
    events = EventStore(make_engine(cluster.settings.database_url))
    deadline = time.monotonic() + 15
    applied: list[Any] = []
    while time.monotonic() < deadline and not applied:
        applied = [
            e
            for e in events.by_correlation("config-1")
            if e.event_type == "config_applied"
            and e.data["keys"] == ["providers.openai.rate_limit"]
        ]
        time.sleep(0.2)
    assert applied, "no worker applied the change"


def test_a_deployment_smoke_tests_on_the_amqp_pool(cluster: Cluster) -> None:
    program = dspyq.Predict("question -> answer")
    program.lm = dspyq.LM("openai/m")
    cluster.client.save_program("amqp-deployed", program)
    settings = cluster.settings.model_copy(
        update={"providers": {"openai": {"api_key": "k", "api_base": cluster.fake_lm.openai_base}}}
    )
    deployer = deployments.deployer(
        Settings.model_validate(settings.model_dump()),
        cluster.client.engine,
        live_workers=deployments.live_workers_from(cluster.client.pools),
        run_smoke=deployments.smoke_runner(
            cluster.client.load_program, cluster.client.evaluate, timeout=60
        ),
    )
    smoke = [{"question": "Q1", "answer": "A1"}, {"question": "Q2", "answer": "A2"}]
    done = deployer.deploy("amqp-deployed", 1, smoke=smoke, metric=answer_exact_match)
    assert done.steps[0]["result"]["live_workers"] == 1
    assert done.steps[4]["result"]["score"] == 100.0
    alias = AliasStore(cluster.client.engine).get("amqp-deployed", "production")
    assert alias is not None and alias.version == 1


def test_an_amqp_broker_without_a_redis_url_is_refused_at_start(cluster: Cluster) -> None:
    with pytest.raises(ConfigurationError, match="set DSPYQ_REDIS_URL"):
        dspyq.Client(Settings(broker_url=cluster.broker_url, redis_url=None))
    env = {k: v for k, v in cluster.env.items() if k != "DSPYQ_REDIS_URL"}
    for args in (["pools"], ["worker", "--pool", "openai"]):
        refused = subprocess.run(
            [sys.executable, "-m", "dspyq", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0
        assert "set DSPYQ_REDIS_URL" in refused.stderr and "Traceback" not in refused.stderr
