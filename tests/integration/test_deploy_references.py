"""Jobs by reference on real workers, Redis and SQL: ``qa@production`` resolved by the
worker when the job starts, a promotion taken up under continuous load without a
failed job, each execution row naming the version that served it, and the same
references through map, stream, evaluate, optimize and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from deploy_fixtures import client, cluster, make_deployer, openai_program  # noqa: F401

import dspyq
from dspyq.api_client import Client
from dspyq.errors import DspyqError, InputError
from dspyq.metrics import answer_exact_match
from dspyq.store.executions import ExecutionStore
from dspyq.testing.cluster import Cluster

pytestmark = pytest.mark.integration


def program(take: int) -> dspyq.Predict:
    return openai_program(f"Answer, take {take}.")


def served(client: Client, job_id: str) -> tuple[str | None, int | None]:
    row = ExecutionStore(client.engine).get(job_id)
    assert row is not None, job_id
    return row.program_name, row.program_version


def three_versions(cluster: Cluster, client: Client) -> None:
    for take in (1, 2, 3):
        client.save_program("qa", program(take))
        cluster.fake_lm.answer_fields({"answer": f"v{take}"}, match=f"take {take}\\.")


def test_a_promotion_under_continuous_load_fails_no_job(cluster: Cluster, client: Client) -> None:
    three_versions(cluster, client)
    cluster.start_worker("w1", concurrency=4)
    cluster.start_worker("w2", concurrency=4)
    client.deploy("qa", 1)
    first = client.submit("qa@production", question="q")
    assert first.result(timeout=60).answer == "v1"
    assert served(client, first.id) == ("qa", 1)

    jobs: list[tuple[float, dspyq.Job]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            jobs.append((time.monotonic(), client.submit("qa@production", question="q")))
            time.sleep(0.01)

    feeder = threading.Thread(target=load)
    feeder.start()
    try:
        time.sleep(1.0)
        client.deploy("qa", 2)
        promoted = time.monotonic()
        time.sleep(2.5)
    finally:
        stop.set()
        feeder.join()
    answers = [(at, job.id, job.result(timeout=60).answer) for at, job in jobs]  # none fails
    for _, job_id, answer in answers:  # the row names the version whose answer came back
        assert served(client, job_id) == ("qa", int(answer[1:]))
    assert {answer for at, _, answer in answers if at < promoted - 0.5} == {"v1"}
    # Submitted over a second after the move: every worker serves the new version.
    assert {answer for at, _, answer in answers if at > promoted + 1.0} == {"v2"}

    back = client.rollback("qa")
    assert back.version == 1
    assert client.submit("qa@production", question="q").result(timeout=60).answer == "v1"
    pinned = client.submit("qa:3", question="q")
    assert pinned.result(timeout=60).answer == "v3" and served(client, pinned.id) == ("qa", 3)
    latest = client.submit("qa", question="q")
    assert latest.result(timeout=60).answer == "v3"


def test_references_through_map_stream_evaluate_optimize(cluster: Cluster, client: Client) -> None:
    three_versions(cluster, client)
    cluster.start_worker("w1", concurrency=4)
    client.deploy("qa", 2)
    jobs = client.map("qa@production", [{"question": f"q{n}"} for n in range(12)])
    assert [job.result(timeout=60).answer for job in jobs] == ["v2"] * 12
    assert {served(client, job.id) for job in jobs} == {("qa", 2)}

    stream = client.stream("qa@production", question="q", timeout=60)
    assert list(stream)[-1].answer == "v2"
    assert served(client, stream.job.id) == ("qa", 2)

    devset = [dspyq.Example(question="q", answer="v2").with_inputs("question")] * 3
    result = client.evaluate("qa@production", devset, metric=answer_exact_match,
                             display_progress=False, timeout=60)  # fmt: skip
    assert result.score == 100.0
    rows = client.evaluation_rows(result["evaluation_id"])
    assert {served(client, row.task_id) for row in rows} == {("qa", 2)}

    # A saved program submitted whole still records its version, while unchanged.
    loaded = client.load_program("qa", 3)
    whole = client.submit(loaded, question="q")
    assert whole.result(timeout=60).answer == "v3" and served(client, whole.id) == ("qa", 3)
    loaded.signature = loaded.signature.with_instructions("Answer, take 1.")
    edited = client.submit(loaded, question="q")
    assert edited.result(timeout=60).answer == "v1" and served(client, edited.id) == (None, None)

    cluster.start_worker("opt", pool="optimize", concurrency=1)
    train = [dspyq.Example(question="q", answer="v2").with_inputs("question")]
    run = client.optimize(dspyq.LabeledFewShot(k=1), "qa@production", trainset=train,
                          metric=answer_exact_match, run_name="qa-opt")  # fmt: skip
    assert run.wait(timeout=120) == "succeeded"
    assert client.list_programs("qa-opt")


def test_bad_references_are_refused_at_the_client(cluster: Cluster, client: Client) -> None:
    three_versions(cluster, client)
    with pytest.raises(InputError, match=r"saved versions: \[1, 2, 3\]"):
        client.submit("qa:9", question="q")
    with pytest.raises(InputError, match="no alias 'production'"):
        client.submit("qa@production", question="q")
    with pytest.raises(InputError, match="No program named 'nope'"):
        client.map("nope@production", [{"question": "q"}])
    with pytest.raises(InputError, match="program reference"):
        client.submit("qa@", question="q")
    with pytest.raises(InputError, match="answer"):  # inputs checked against the version
        client.submit("qa:1", answer="q")
    with pytest.raises(InputError, match="No program named"):
        client.evaluate("zz:1", [], metric=answer_exact_match)


def test_a_job_whose_version_vanished_fails_once_with_a_row_naming_it(
    cluster: Cluster, client: Client
) -> None:
    from sqlalchemy import delete

    from dspyq.store.engine import write_transaction
    from dspyq.store.models import ProgramRecord

    three_versions(cluster, client)
    # Deployed while no worker runs: the pipeline is told the pool has one.
    deployer = make_deployer(
        client.engine, cluster.redis_url, cluster.prefix, settings=client.settings
    )
    deployer.deploy("qa", 2)
    job = client.submit("qa@production", question="q")  # checked here; no worker runs yet
    with write_transaction(client.engine, "delete a version") as conn:
        conn.execute(delete(ProgramRecord).where(ProgramRecord.version == 2))  # type: ignore[arg-type]
    cluster.start_worker("w1", concurrency=2)
    with pytest.raises(DspyqError, match="No program 'qa' with version 2"):
        job.result(timeout=60)
    row = ExecutionStore(client.engine).get(job.id)
    assert row is not None and row.status == "failed"
    assert (row.program_name, row.program_version) == ("qa", 2)
    assert row.error is not None and row.error["type"] == "InputError"
    kinds = [e.event_type for e in client.events(job.correlation_id)]
    assert kinds == ["module_execution_start", "module_execution_error"]


def _cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dspyq", *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_runs_and_submits_by_reference(cluster: Cluster, client: Client) -> None:
    three_versions(cluster, client)
    cluster.start_worker("w1", concurrency=2)
    client.deploy("qa", 2)
    ran = _cli(cluster, "run", "qa@production", "--question", "q", "--json")
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout)
    assert out["outputs"] == {"answer": "v2"}
    assert served(client, out["job_id"]) == ("qa", 2)
    sent = _cli(cluster, "submit", "qa:3", "--question", "q", "--json")
    assert sent.returncode == 0, sent.stderr
    job = client.job(json.loads(sent.stdout)["job_id"])
    assert job.result(timeout=60).answer == "v3"
    bad = _cli(cluster, "run", "qa:7", "--question", "q")
    assert bad.returncode != 0 and "saved versions: [1, 2, 3]" in bad.stderr + bad.stdout
