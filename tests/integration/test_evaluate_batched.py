"""Batched evaluation: examples travel in batch messages, stragglers are hedged; the
scores, rows and events are those of one task per example."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dspyq
from dspyq.api_client import evaluation_results
from dspyq.metrics import answer_exact_match
from dspyq.store import EventStore, ExecutionStore, make_engine
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    cluster, server = make_cluster(tmp_path, sqlite_url, latency=0.02)
    try:
        yield cluster
    finally:
        cluster.stop()
        server.stop()


def _devset(n: int) -> list[dspyq.Example]:
    return [
        dspyq.Example(question=f"Q{i}", answer=f"A{i}").with_inputs("question") for i in range(n)
    ]


def _script(cluster: Cluster, n: int) -> None:
    """Right for every example but the last two: one wrong, one unparseable."""
    for i in range(n - 2):
        cluster.fake_lm.answer_fields({"answer": f"A{i}"}, match=f"Q{i}\\b")
    cluster.fake_lm.answer_fields({"answer": "wrong"}, match=f"Q{n - 2}\\b")
    cluster.fake_lm.answer("no markers and not JSON either", match=f"Q{n - 1}\\b")


def test_batched_evaluation_scores_records_and_traces_each_example_once(
    cluster: Cluster,
) -> None:
    n = 40  # 8 messages of 5 examples
    _script(cluster, n)
    cluster.start_worker("w1", concurrency=3)
    cluster.start_worker("w2", concurrency=3)
    program = dspyq.Predict("question -> answer")

    remote = cluster.client.evaluate(
        program, _devset(n), metric=answer_exact_match, lm="openai/m", timeout=120
    )
    lm = dspyq.LM("openai/m", api_base=cluster.fake_lm.openai_base, api_key="k", cache=False)
    with dspyq.context(lm=lm):
        local = dspyq.Evaluate(devset=_devset(n), metric=answer_exact_match, num_threads=3)(program)

    assert remote.score == local.score == round(100 * (n - 2) / n, 2)
    assert [(dict(e.items()), dict(p.items()), s) for e, p, s in remote.results] == [
        (dict(e.items()), dict(p.items()), s) for e, p, s in local.results
    ]
    rows = cluster.client.evaluation_rows(remote.evaluation_id)
    assert [r.example_index for r in rows] == list(range(n))
    assert [r.score for r in rows] == [1.0] * (n - 2) + [0.0, 0.0]
    assert rows[-1].error is not None and rows[-1].error["type"] == "AdapterParseError"
    engine = make_engine(cluster.settings.database_url)
    executions = ExecutionStore(engine).list(correlation_id=remote.correlation_id, limit=100)
    assert sorted(e.task_id for e in executions) == sorted(r.task_id for r in rows)
    assert {e.parent_id for e in executions} == {remote.evaluation_id}
    types = [e.event_type for e in EventStore(engine).by_correlation(remote.correlation_id)]
    assert types.count("module_execution_start") == n
    assert types.count("module_execution_complete") == n - 1
    record = cluster.client.evaluation(remote.evaluation_id)
    assert record is not None and (record.status, record.errors) == ("succeeded", 1)


def test_a_straggling_example_is_hedged_and_counted_once(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 20
    _script(cluster, n)
    monkeypatch.setattr(evaluation_results, "HEDGE_FLOOR_S", 0.5)
    cluster.start_worker("w1", concurrency=4)
    cluster.start_worker("w2", concurrency=4)
    cluster.client.evaluate(  # warm both workers up, so only the slow reply straggles
        dspyq.Predict("question -> answer"), _devset(8), metric=answer_exact_match, lm="openai/m"
    )
    cluster.fake_lm.fail_next(1, kind="slow", delay=15.0)  # the next LM call straggles

    started = time.monotonic()
    result = cluster.client.evaluate(
        dspyq.Predict("question -> answer"),
        [dspyq.Example(question=f"Q{i} again", answer=f"A{i}").with_inputs("question")
         for i in range(n)],
        metric=answer_exact_match,
        lm="openai/m",
        display_progress=False,
        timeout=60,
    )  # fmt: skip

    assert time.monotonic() - started < 12  # not held by the 15-s reply
    assert result.score == round(100 * (n - 2) / n, 2)
    rows = cluster.client.evaluation_rows(result.evaluation_id)
    assert [r.example_index for r in rows] == list(range(n))
    executions = ExecutionStore(make_engine(cluster.settings.database_url)).list(
        correlation_id=result.correlation_id, limit=100
    )
    # One more execution than examples: the hedged copy; its row names the copy that won.
    assert len(executions) == n + 1
    assert {r.task_id for r in rows} < {e.task_id for e in executions}
