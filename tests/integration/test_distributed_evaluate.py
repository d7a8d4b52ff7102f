"""Distributed evaluation: a devset scored by real worker processes, over real Redis and SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from evaluation_metrics import answer_has_digit
from sqlalchemy import Engine

import dspyq
from dspyq.errors import DspyqError, InputError
from dspyq.metrics import answer_exact_match
from dspyq.store import ExecutionStore, make_engine
from dspyq.store.evaluations import EvaluationStore
from dspyq.testing.cluster import REDIS_URL, Cluster, make_cluster

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    # Workers can import this directory's modules (a user's own metrics), and only those
    # and dspyq's: the allowed-prefixes setting is what lets them in.
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.02,
        PYTHONPATH=str(HERE),
        DSPYQ_ALLOWED_IMPORTS='["evaluation_metrics"]',
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        server.stop()


def _devset() -> list[dspyq.Example]:
    return [
        dspyq.Example(question=f"Q{i}", answer=f"A{i}").with_inputs("question") for i in range(6)
    ]


def _script(cluster: Cluster) -> None:
    """Right for Q0-Q3, wrong (a digit, though) for Q4, unparseable for Q5."""
    fake = cluster.fake_lm
    for i in range(4):
        fake.answer_fields({"answer": f"A{i}"}, match=f"Q{i}\\b")
    fake.answer_fields({"answer": "B4"}, match="Q4\\b")
    fake.answer("no markers and not JSON either", match="Q5\\b")


def _queued(cluster: Cluster) -> int:
    return int(redis.Redis.from_url(REDIS_URL).llen(f"{cluster.prefix}:dspyq.lm.openai"))


def test_distributed_evaluate_matches_in_process_evaluate(cluster: Cluster) -> None:
    _script(cluster)
    cluster.start_worker("w1", concurrency=3)
    cluster.start_worker("w2", concurrency=3)
    program = dspyq.Predict("question -> answer")

    remote = cluster.client.evaluate(
        program, _devset(), metric=answer_exact_match, lm="openai/m", timeout=60
    )
    lm = dspyq.LM("openai/m", api_base=cluster.fake_lm.openai_base, api_key="k", cache=False)
    with dspyq.context(lm=lm):
        local = dspyq.Evaluate(devset=_devset(), metric=answer_exact_match, num_threads=3)(program)

    assert local.score == remote.score == round(100 * 4 / 6, 2)
    assert [(dict(e.items()), dict(p.items()), s) for e, p, s in remote.results] == [
        (dict(e.items()), dict(p.items()), s) for e, p, s in local.results
    ]
    assert [s for _, _, s in remote.results] == [True] * 4 + [False, 0.0]


def test_evaluation_and_its_rows_are_recorded_in_sql(cluster: Cluster) -> None:
    _script(cluster)
    cluster.start_worker("w1", concurrency=4)

    result = cluster.client.evaluate(
        dspyq.Predict("question -> answer"),
        _devset(),
        metric=answer_has_digit,
        lm="openai/m",
        failure_score=0.25,
        display_progress=False,
        timeout=60,
    )

    assert result.score == round(100 * (4 + 0.5 + 0.25) / 6, 2)
    record = cluster.client.evaluation(result.evaluation_id)
    assert record is not None
    assert (record.status, record.n, record.errors, record.score) == (
        "succeeded",
        6,
        1,
        result.score,
    )
    assert record.metric == "evaluation_metrics:answer_has_digit"
    assert record.program == "dspyq.core.predict:Predict"
    assert record.correlation_id == result.correlation_id and record.finished_at is not None
    rows = cluster.client.evaluation_rows(result.evaluation_id)
    assert [r.example_index for r in rows] == list(range(6))
    assert [r.score for r in rows] == [1.0] * 4 + [0.5, 0.25]
    assert [r.error is None for r in rows] == [True] * 5 + [False]
    assert rows[5].error is not None and rows[5].error["type"] == "AdapterParseError"
    executions = ExecutionStore(make_engine(cluster.settings.database_url)).list(
        correlation_id=result.correlation_id
    )
    assert sorted(e.task_id for e in executions) == sorted(r.task_id for r in rows)
    assert {e.parent_id for e in executions} == {result.evaluation_id}
    assert sorted(e.status for e in executions) == ["failed"] + ["succeeded"] * 5


def _closure_metric() -> object:
    def metric(example: dspyq.Example, prediction: dspyq.Prediction) -> bool:
        return bool(example.answer == prediction.answer)

    return metric


@pytest.mark.parametrize(
    ("metric", "problem"),
    [
        (lambda example, prediction: True, "lambda"),
        (_closure_metric(), "inside a function"),
    ],
)
def test_metric_without_import_path_is_refused_before_anything_is_enqueued(
    cluster: Cluster, metric: object, problem: str
) -> None:
    with pytest.raises(InputError, match=problem) as refused:
        cluster.client.evaluate(
            dspyq.Predict("question -> answer"), _devset(), metric=metric, lm="openai/m"
        )
    assert "metric" in refused.value.message
    assert _queued(cluster) == 0
    assert ExecutionStore(cluster.client.engine).list() == []
    assert EvaluationStore(cluster.client.engine).list() == []


def test_metric_outside_the_allowed_imports_fails_each_example_on_the_worker(
    cluster: Cluster,
) -> None:
    _script(cluster)
    cluster.start_worker("w1", concurrency=4)
    result = cluster.client.evaluate(
        dspyq.Predict("question -> answer"),
        _devset()[:3],
        metric="json:dumps",
        lm="openai/m",
        display_progress=False,
        timeout=60,
    )
    assert result.score == 0.0
    rows = cluster.client.evaluation_rows(result.evaluation_id)
    assert all(r.error is not None and r.error["type"] == "ConfigurationError" for r in rows)
    assert "allowed imports" in str(rows[0].error)


def test_a_redelivered_example_overwrites_its_row(store_engine: Engine) -> None:
    # The worker's write, on SQLite and PostgreSQL: one row per (evaluation, index).
    store = EvaluationStore(store_engine)
    store.open("ev1", "c1", "dspyq.core.predict:Predict", "m:f", "openai/m", n=2)
    store.record_row("ev1", 1, "t1", 0.0, {"type": "ProviderError", "message": "down"})
    store.record_row("ev1", 1, "t1", 1.0, None)
    store.record_row("ev1", 0, "t0", 0.5, None)
    store.finish("ev1", score=75.0, errors=0)

    assert [(r.example_index, r.score, r.error) for r in store.rows("ev1")] == [
        (0, 0.5, None),
        (1, 1.0, None),
    ]
    record = store.get("ev1")
    assert record is not None and (record.status, record.score) == ("succeeded", 75.0)


def test_evaluation_stops_at_max_errors_and_is_recorded_as_failed(cluster: Cluster) -> None:
    cluster.fake_lm.answer("no markers and not JSON either")
    cluster.start_worker("w1", concurrency=2)
    devset = _devset()

    with pytest.raises(DspyqError, match="max_errors=2") as stopped:
        cluster.client.evaluate(
            dspyq.Predict("question -> answer"),
            devset,
            metric=answer_exact_match,
            lm="openai/m",
            max_errors=2,
            display_progress=False,
            timeout=60,
        )

    [record] = EvaluationStore(cluster.client.engine).list()
    assert record.id == stopped.value.context["evaluation_id"]
    assert (record.status, record.score, record.errors) == ("failed", None, 2)
