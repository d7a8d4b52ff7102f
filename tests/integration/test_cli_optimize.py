"""``dspyq optimize`` and ``dspyq runs`` as real processes, against real workers.

The programs and examples come from files, as a user's would; the fake model knows a
capital only when the prompt shows a worked example (see test_optimization_runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_optimization_runs import CAPITALS, TRAIN, VAL, script_capitals

from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration

PROGRAMS = """
import dspyq

qa = dspyq.ChainOfThought("question -> answer")
"""


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    cluster, server = make_cluster(tmp_path, sqlite_url, latency=0.02)
    (tmp_path / "cli_programs.py").write_text(PROGRAMS)
    cluster.env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        server.stop()


def dspyq_cli(
    cluster: Cluster, *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dspyq", *args],
        cwd=cluster.tmp_path,
        env={**cluster.env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_examples(path: Path, countries: list[str], jsonl: bool) -> Path:
    rows = [{"question": f"What is the capital of {c}?", "answer": CAPITALS[c]} for c in countries]
    if jsonl:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        path.write_text(json.dumps(rows))
    return path


def test_optimize_waits_for_the_run_and_runs_lists_and_shows_it(cluster: Cluster) -> None:
    script_capitals(cluster)
    cluster.start_worker("lm", concurrency=4)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)
    train = write_examples(cluster.tmp_path / "train.jsonl", TRAIN, jsonl=True)
    val = write_examples(cluster.tmp_path / "val.json", VAL, jsonl=False)

    started = dspyq_cli(
        cluster, "optimize", "BootstrapFewShot", "cli_programs:qa",
        "--trainset", str(train), "--valset", str(val), "--lm", "openai/m",
        "-o", "max_bootstrapped_demos=2", "--name", "cliqa", "--wait", "--json",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    summary = json.loads(started.stdout)
    assert (summary["status"], summary["best_score"], summary["iterations"]) == (
        "succeeded",
        100.0,
        1,
    )
    assert summary["program"] == {"name": "cliqa", "version": 1}
    run_id = summary["run_id"]

    listed = dspyq_cli(cluster, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    table = dspyq_cli(cluster, "runs")
    assert table.returncode == 0, table.stderr
    assert run_id in table.stdout and "BootstrapFewShot" in table.stdout

    shown = dspyq_cli(cluster, "runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    details = json.loads(shown.stdout)
    assert details["settings"]["max_bootstrapped_demos"] == 2
    assert [(i["iteration"], i["evaluation_score"]) for i in details["iterations"]] == [(1, 100.0)]
    human = dspyq_cli(cluster, "runs", "show", run_id)
    assert human.returncode == 0, human.stderr
    assert "Iterations" in human.stdout and "every candidate evaluated" in human.stdout

    # A saved program is a starting point too; without --wait the command returns at once.
    again = dspyq_cli(
        cluster, "optimize", "labeled-few-shot", "cliqa@1", "--trainset", str(train),
        "--lm", "openai/m", "-o", "k=2", "--max-lm-calls", "50",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "Started run" in again.stdout and "dspyq runs show" in again.stdout


BAD_REQUESTS = [
    (["Nope", "cli_programs:qa"], "unknown optimizer 'Nope'; choose one of"),
    (["COPRO", "no_such_program"], "no saved program named 'no_such_program'"),
    (["COPRO", "cli_programs:qa", "-o", "breadth"], "is not name=value"),
    (["COPRO", "cli_programs:qa", "-o", "wings=2"], "COPRO does not take option(s) wings"),
    (["COPRO", "cli_programs:qa", "--metric", "nowhere:metric"], "nowhere"),
    (["MIPROv2", "cli_programs:qa", "-o", "num_trials=3"], "num_trials cannot be set"),
    (["COPRO", "cli_programs:qa", "--max-lm-calls", "0"], "--max-lm-calls must be"),
]


def test_a_bad_request_is_one_line_with_exit_code_2(cluster: Cluster) -> None:
    train = write_examples(cluster.tmp_path / "train.json", TRAIN, jsonl=False)

    for args, message in BAD_REQUESTS:
        result = dspyq_cli(cluster, "optimize", *args, "--trainset", str(train), "--lm", "openai/m")
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreadable_examples_and_unknown_runs_are_one_line_errors(cluster: Cluster) -> None:
    broken = cluster.tmp_path / "broken.jsonl"
    broken.write_text('{"question": "x", "answer": "y"}\n{oops\n')

    for args, message in [
        (["--trainset", str(broken)], "is not JSON or JSONL"),
        (["--trainset", str(cluster.tmp_path / "missing.json")], "cannot read the trainset"),
    ]:
        result = dspyq_cli(
            cluster, "optimize", "COPRO", "cli_programs:qa", "--lm", "openai/m", *args
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
    shown = dspyq_cli(cluster, "runs", "show", "deadbeef")
    assert shown.returncode == 2 and "no optimization run 'deadbeef'" in shown.stderr
