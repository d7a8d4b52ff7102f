"""``dspyq deploy / rollback / deployments / feedback / lineage`` as real processes, against
real workers, Redis and SQL with the fake LM answering: what the Client methods do, and
bad input refused with one line (exit 2; a failed pipeline step exits 1), changing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_fixtures import client, cluster, openai_program  # noqa: F401  (fixtures)

from dspyq.api_client import Client
from dspyq.store.aliases import AliasStore
from dspyq.testing.cluster import Cluster

pytestmark = pytest.mark.integration

PROGRAM_MODULE = """
import dspyq

qa = dspyq.Predict(dspyq.Signature("question -> answer").with_instructions("Answer, take 2."))
qa.lm = dspyq.LM("openai/m")
"""


def _cli(cluster: Cluster, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **cluster.env, "PYTHONPATH": str(cwd), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "dspyq", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> dict:  # type: ignore[type-arg]
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_cli_deploys_rolls_back_lists_scores_and_traces(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    (tmp_path / "myprog.py").write_text(PROGRAM_MODULE)
    for take in (1, 2, 3):
        cluster.fake_lm.answer_fields({"answer": f"v{take}"}, match=f"take {take}\\.")
    client.save_program("qa", openai_program("Answer, take 1."))
    cluster.start_worker("w1", concurrency=2)

    first = _ok(_cli(cluster, tmp_path, "deploy", "qa", "1", "--json"))
    assert (first["version"], first["previous_version"], first["saved"]) == (1, None, False)
    imported = _ok(_cli(cluster, tmp_path, "deploy", "qa", "myprog:qa", "--json"))
    assert (imported["version"], imported["previous_version"], imported["saved"]) == (2, 1, True)
    again = _ok(_cli(cluster, tmp_path, "deploy", "qa", "myprog:qa", "--json"))
    assert (again["version"], again["saved"]) == (2, False)  # the latest is that program
    client.save_program("qa", openai_program("Answer, take 3."))
    client.export_program("qa", 3, tmp_path / "qa3.json")
    canary = _ok(
        _cli(cluster, tmp_path, "deploy", "qa", "qa3.json", "--canary", "0.5",
             "--canary-window", "5m", "--min-samples", "3", "--json")
    )  # fmt: skip
    assert (canary["version"], canary["status"], canary["saved"]) == (3, "canary", False)
    policy = canary["steps"][-1]["result"]["canary_policy"]
    assert policy == {"window_seconds": 300.0, "min_samples": 3.0}

    listed = _cli(cluster, tmp_path, "deployments", "qa")
    assert "qa@production serves version 2, canary version 3 on 50%" in listed.stdout
    back = _cli(cluster, tmp_path, "rollback", "qa")
    assert back.returncode == 0 and "rolled back to version 2" in back.stdout
    history = _ok(_cli(cluster, tmp_path, "deployments", "--json"))
    assert [a["version"] for a in history["aliases"]] == [2]
    assert [d["action"] for d in history["deployments"]] == ["rollback"] + ["deploy"] * 4

    job = client.submit("qa@production", question="q")
    assert job.result(timeout=60).answer == "v2"
    scored = _ok(_cli(cluster, tmp_path, "feedback", job.id, "0.8", "--label", "good", "--json"))
    assert (scored["program_name"], scored["program_version"], scored["score"]) == ("qa", 2, 0.8)
    [link] = _ok(_cli(cluster, tmp_path, "lineage", "qa", "2", "--json"))
    assert (link["version"], link["parent_version"]) == (2, None)


def test_the_cli_refuses_bad_input_in_one_line_and_changes_nothing(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    (tmp_path / "myprog.py").write_text(PROGRAM_MODULE)
    client.save_program("qa", openai_program("Answer, take 1."))
    no_worker = _cli(cluster, tmp_path, "deploy", "qa")
    assert no_worker.returncode == 1 and "failed at validate_resources" in no_worker.stderr
    cluster.start_worker("w1", concurrency=2)
    _ok(_cli(cluster, tmp_path, "deploy", "qa", "--json"))
    cluster.fake_lm.answer_fields({"answer": "4"})
    job = client.submit("qa@production", question="q")
    job.result(timeout=60)

    refused = {
        ("deploy", "qa", "7"): r"saved versions: [1]",
        ("deploy", "nope"): "No program named 'nope'",
        ("deploy", "qa", "--canary", "1.5"): "canary must be strictly between 0 and 1",
        ("deploy", "qa", "myprog:qa", "--canary", "2"): "canary must be strictly between",
        ("deploy", "qa", "myprog:qa", "--min-samples", "3"): "no canary is deployed",
        ("deploy", "qa", "--canary", "0.1", "--canary-window", "1h", "--canary-max-wait", "5m"): (
            "shorter than the canary's window"
        ),
        ("deploy", "qa", "other:1"): "is a version of 'other', not of 'qa'",
        ("deploy", "qa", "qa@staging"): "has no alias 'staging'",
        ("deploy", "qa", "missing.json"): "no program state file",
        ("deploy", "qa", "--canary", "0.1", "--canary-window", "5x"): "must look like 90s",
        ("deploy", "qa", "--alias", " "): "alias",
        ("deploy", "qa", "--metric", "dspyq.metrics:answer_exact_match"): "without smoke",
        ("rollback", "qa"): "no earlier version to roll back to",
        ("rollback", "nope"): "No program named 'nope'",
        ("deployments", "nope"): "No program named 'nope'",
        ("feedback", "no-such-job", "1"): "no job 'no-such-job' is recorded",
        ("feedback", job.id, "great"): "SCORE 'great' is not a number",
        ("feedback", job.id, "nan"): "finite",
        ("lineage", "qa", "9"): "saved versions: [1]",
        ("lineage", "qa", "x"): "VERSION 'x' is not a version number",
    }
    for args, message in refused.items():
        done = _cli(cluster, tmp_path, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1

    assert [p.version for p in client.list_programs("qa")] == [1]
    assert [d.status for d in client.deployments("qa")] == ["succeeded", "failed"]
    alias = AliasStore(client.engine).get("qa", "production")
    assert alias is not None and (alias.version, alias.revision) == (1, 1)
