"""``Client.deploy`` / ``rollback`` / ``deployments`` / ``feedback`` / ``lineage`` against
real workers, Redis and SQL, with the fake LM answering."""

from __future__ import annotations

import pytest
from deploy_fixtures import client, cluster  # noqa: F401  (fixtures)
from deploy_fixtures import openai_program as program

from dspyq.api_client import Client
from dspyq.errors import DeploymentError, InputError
from dspyq.store.lineage import LineageStore
from dspyq.testing.cluster import Cluster

pytestmark = pytest.mark.integration


def test_deploy_rollback_history_feedback_and_lineage(cluster: Cluster, client: Client) -> None:
    cluster.start_worker("w1", concurrency=2)
    cluster.fake_lm.answer_fields({"answer": "4"})
    client.save_program("qa", program("Answer."))
    client.save_program("qa", program("Answer well."))

    first = client.deploy("qa", 1)
    assert (first.name, first.alias, first.version, first.previous_version) == (
        "qa", "production", 1, None,
    )  # fmt: skip
    assert [step["step"] for step in first.steps][-1] == "enable_traffic"
    latest = client.deploy("qa", smoke=[{"question": "2+2?"}])
    assert (latest.version, latest.previous_version) == (2, 1)
    back = client.rollback("qa")
    assert (back.action, back.version, back.previous_version) == ("rollback", 1, 2)
    history = client.deployments("qa")
    assert [(d.action, d.version) for d in history] == [
        ("rollback", 1), ("deploy", 2), ("deploy", 1),
    ]  # fmt: skip

    job = client.submit(program("Answer."), question="2+2?")
    assert job.result(timeout=60).answer == "4"
    stored = client.feedback(job.id, 0.75, label="good", comment="right")
    assert (stored.task_id, stored.score, stored.label) == (job.id, 0.75, "good")

    LineageStore(client.engine).record("qa", 2, parent_version=1, run_id="run-1")
    chain = client.lineage("qa", 2)
    assert (chain[0].version, chain[0].parent_version, chain[0].run_id) == (2, 1, "run-1")


def test_bad_input_is_refused_and_changes_nothing(cluster: Cluster, client: Client) -> None:
    client.save_program("qa", program("Answer."))
    with pytest.raises(DeploymentError, match="no live worker"):
        client.deploy("qa")
    with pytest.raises(InputError, match=r"saved versions: \[1\]"):
        client.deploy("qa", 7)
    with pytest.raises(InputError, match="No program named 'nope'"):
        client.deploy("nope")
    with pytest.raises(InputError, match="alias"):
        client.deploy("qa", 1, alias=" ")
    with pytest.raises(InputError, match="canary"):
        client.deploy("qa", 1, canary=1.5)
    with pytest.raises(InputError, match="no alias"):
        client.rollback("qa")
    with pytest.raises(InputError, match="is recorded"):
        client.feedback("not-a-job", 1.0)
    with pytest.raises(InputError, match="is a number"):
        client.feedback("not-a-job", "great")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="saved versions"):
        client.lineage("qa", 4)
    with pytest.raises(InputError, match="a version is a whole number"):
        client.lineage("qa", "1")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="takes no option window"):
        client.deploy("qa", 1, canary=0.1, window=3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="smoke is a list of examples"):
        client.deploy("qa", 1, smoke="2+2?")
    with pytest.raises(InputError, match="lm is written 'provider/model'"):
        client.deploy("qa", 1, lm="gpt")
    with pytest.raises(InputError, match="No program named 'nope'"):
        client.deployments("nope")
    with pytest.raises(InputError, match="takes no option holdut"):
        client.improve("qa", metric="dspyq.metrics:answer_exact_match", holdut=0.2)
    assert [d.status for d in client.deployments("qa")] == ["failed"]
