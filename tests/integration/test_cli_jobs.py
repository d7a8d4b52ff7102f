"""``dspyq run/submit/events/executions`` as real processes against a real worker."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dspyq.core.multihop import MultiHopQA
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # One worker for the module: every command here runs against the same deployment.
    tmp = tmp_path_factory.mktemp("cli-jobs")
    cluster, server = make_cluster(tmp, f"sqlite:///{tmp / 'store.db'}", latency=0.0)
    server.answer_fields({"answer": "Paris"}, match="Capital of France")
    server.answer_fields({"reasoning": "2 and 2 make 4", "answer": "4"}, match="two plus two")
    server.answer("not parseable in any format", match="hopeless")
    # MultiHopQA: the synthesize prompt also names sub_questions, so it comes first.
    server.answer_fields({"reasoning": "r", "answer": "Final"}, match="sub_answers")
    server.answer_fields(
        {"reasoning": "two parts", "sub_questions": ["Who wrote X?", "When was Y born?"]},
        match="sub_questions",
    )
    server.answer_fields({"reasoning": "r", "answer": "Ann"}, match="Who wrote X")
    server.answer_fields({"reasoning": "r", "answer": "1900"}, match="When was Y born")
    server.answer_fields({"answer": "default"})
    try:
        cluster.start_worker("w1", concurrency=2)
        yield cluster
    finally:
        cluster.stop()
        server.stop()


def dspyq(cluster: Cluster, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dspyq", *args],
        cwd=cluster.tmp_path,
        env={**cluster.env, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert text in lines[0]


def test_run_waits_and_prints_the_outputs(cluster: Cluster) -> None:
    rich = dspyq(cluster, "run", "question -> answer", "--question", "Capital of France?",
                 "--lm", "openai/m")  # fmt: skip
    assert rich.returncode == 0, rich.stderr
    assert "answer" in rich.stdout and "Paris" in rich.stdout
    assert "LM call" in rich.stdout and "correlation" in rich.stdout

    # A new question (the first is cached now) on a priced model.
    data = json_of(dspyq(cluster, "run", "question -> answer", "--question=Capital of France!",
                         "--lm", "openai/gpt-4o-mini", "--json"))  # fmt: skip
    assert data["outputs"] == {"answer": "Paris"}
    assert data["lm_calls"] == 1 and data["input_tokens"] > 0 and data["cost_usd"] > 0
    assert data["job_id"] and data["correlation_id"]


def test_run_chain_of_thought_with_several_inputs(cluster: Cluster) -> None:
    data = json_of(dspyq(cluster, "run", "context, question -> answer", "--module", "cot",
                         "--context", "arithmetic", "--question", "two plus two?",
                         "--lm", "openai/m", "--json"))  # fmt: skip
    assert data["outputs"] == {"reasoning": "2 and 2 make 4", "answer": "4"}


def test_run_can_stream_the_lm_text(cluster: Cluster) -> None:
    result = dspyq(cluster, "run", "question -> answer", "--question", "Capital of France?",
                   "--lm", "openai/m", "--stream")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "[[ ## answer ## ]]\nParis" in result.stdout  # the raw text, then the table


def test_submit_then_events_shows_the_trace_as_a_tree(cluster: Cluster) -> None:
    submitted = json_of(dspyq(cluster, "submit", "question -> answer",
                              "--question", "Capital of France, traced?", "--lm", "openai/m",
                              "--json"))  # fmt: skip
    job = cluster.client.job(submitted["job_id"], submitted["correlation_id"])
    assert job.result(timeout=30).answer == "Paris"

    tree = dspyq(cluster, "events", submitted["correlation_id"])
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert submitted["correlation_id"] in lines[0]
    assert "Predict" in lines[1] and "succeeded" in lines[1] and "tokens" in lines[1]
    lm_line = next(line for line in lines if "LM call" in line)
    assert "openai/m" in lm_line and "ms" in lm_line and "$" in lm_line
    assert lines[1].startswith(("├", "└")) and lm_line.lstrip("│ ").startswith(("├", "└"))
    assert any("complete" in line for line in lines)

    data = json_of(dspyq(cluster, "events", submitted["correlation_id"], "--json"))
    types = [e["event_type"] for e in data["events"]]
    assert types[0] == "module_execution_start" and types[-1] == "module_execution_complete"
    assert "lm_request" in types
    [row] = data["executions"]
    assert row["task_id"] == submitted["job_id"] and row["status"] == "succeeded"

    plain = dspyq(cluster, "submit", "question -> answer", "--question", "x", "--lm", "openai/m")
    assert plain.returncode == 0 and "dspyq events" in plain.stdout


def test_events_of_a_multi_hop_job_nest_its_hops_under_it(cluster: Cluster) -> None:
    job = cluster.client.submit(MultiHopQA(), lm="openai/m", question="Complex?")
    assert job.result(timeout=60).answer == "Final"

    tree = dspyq(cluster, "events", job.correlation_id)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    root = [line for line in lines[1:] if line.startswith(("├", "└"))]
    assert len(root) == 1 and "MultiHopQA" in root[0]  # one job at the top ...
    nested = [line for line in lines if "task " in line and line[:4].strip("│ ") == ""]
    assert len(nested) == 3  # ... with decompose and the two hops under it
    assert "MultiHopQA.decompose" in nested[0]
    assert all("MultiHopQA.answer_hop" in line for line in nested[1:])
    assert sum("LM call" in line for line in lines) == 4


def test_executions_lists_recent_ones_with_filters(cluster: Cluster) -> None:
    failed = dspyq(cluster, "run", "question -> answer", "--question", "hopeless",
                   "--lm", "openai/m")  # fmt: skip
    one_line_error(failed, 1, "AdapterParseError: LM response cannot be serialized")
    assert "(trace: dspyq events " in failed.stderr
    dspyq(cluster, "run", "question -> answer", "--question", "again", "--lm", "openai/m")

    newest = json_of(dspyq(cluster, "executions", "--limit", "2", "--json"))
    assert len(newest) == 2
    assert newest[0]["inputs"] == {"question": "again"}  # newest first
    assert newest[1]["inputs"] == {"question": "hopeless"}
    only_failed = json_of(dspyq(cluster, "executions", "--status", "failed", "--json"))
    assert only_failed and all(row["status"] == "failed" for row in only_failed)

    table = dspyq(cluster, "executions", "--limit", "5")
    assert table.returncode == 0, table.stderr
    assert "most recent executions" in table.stdout
    assert "failed" in table.stdout and "succeeded" in table.stdout


def test_mistakes_get_one_line_errors(cluster: Cluster) -> None:
    one_line_error(dspyq(cluster, "run", "question answer", "--question", "q"), 2,
                   "must contain exactly one '->'")  # fmt: skip
    one_line_error(dspyq(cluster, "run", "question -> answer", "--query", "q"), 2,
                   "unknown input --query; 'question -> answer' takes: --question ...")  # fmt: skip
    one_line_error(dspyq(cluster, "submit", "context, question -> answer", "--question", "q"), 2,
                   "missing input --context")  # fmt: skip
    one_line_error(dspyq(cluster, "run", "q -> a", "--q", "x", "--lm", "nosuch/m"), 2,
                   "unknown provider 'nosuch'")  # fmt: skip
    one_line_error(dspyq(cluster, "run", "q -> a", "--q", "x", "--module", "react"), 2,
                   "unknown --module 'react'")  # fmt: skip
    one_line_error(dspyq(cluster, "events", "no-such-correlation"), 1,
                   "no events recorded for correlation id 'no-such-correlation'")  # fmt: skip
    one_line_error(dspyq(cluster, "executions", "--status", "done"), 2, "unknown --status")
    one_line_error(
        dspyq(cluster, "run", "q -> a", "--q", "x", DSPYQ_BROKER_URL="redis://127.0.0.1:1/0"),
        1,
        "the broker at redis://127.0.0.1:1/0 is unreachable",
    )
    one_line_error(dspyq(cluster, "run", "q -> a", "--q", "x", "--lm", "anthropic/m",
                         "--timeout", "1"), 1, "no worker has taken it")  # fmt: skip
    missing_db = f"sqlite:///{Path(cluster.tmp_path) / 'nothing-here.db'}"
    one_line_error(dspyq(cluster, "executions", DSPYQ_DATABASE_URL=missing_db), 1,
                   "no database at")  # fmt: skip
