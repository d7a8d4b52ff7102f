"""Optimizers without a round strategy run their whole ``compile`` as one queued task.

The same optimizer, data and scripted fake LM run once through ``compile()`` and once
through ``client.optimize(...)`` (a coordinator, a provider pool, real Redis and SQL);
the worker rebuilds the optimizer from the settings the client captured, so both
compiled programs hold the same demos and instructions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_optimization_runs import TRAIN, VAL, examples, script_capitals
from test_optimizer_paths import shape

import dspyq
from dspyq.metrics import answer_exact_match
from dspyq.store.events import EventStore
from dspyq.store.runs import RunStore
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
RULES = "Answer with the capital city only."


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    cluster, server = make_cluster(tmp_path, sqlite_url, PYTHONPATH=str(HERE))
    cluster.start_worker("lm", concurrency=2)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)
    try:
        yield cluster
    finally:
        cluster.stop()
        server.stop()


def script_rules(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields(
        {"reasoning": "They ask for capitals.", "natural_language_rules": RULES},
        match="examples_text",
    )
    script_capitals(cluster)


CASES: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {
    "InferRules": (
        lambda: dspyq.InferRules(
            metric=answer_exact_match, num_candidates=2, num_rules=3, max_bootstrapped_demos=1
        ),
        {},
    ),
    "BootstrapFewShotWithOptuna": (
        lambda: dspyq.BootstrapFewShotWithOptuna(
            metric=answer_exact_match, num_candidate_programs=3, seed=5
        ),
        {"max_demos": 2},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_queue_runs_the_compile_the_process_runs(cluster: Cluster, name: str) -> None:
    make, options = CASES[name]
    lm = dspyq.LM("openai/m", api_base=cluster.fake_lm.openai_base, api_key="k", cache=False)

    cluster.fake_lm.reset()
    script_rules(cluster)
    with dspyq.context(lm=lm):
        local = make().compile(
            dspyq.ChainOfThought("question -> answer"), trainset=examples(TRAIN), **options
        )

    cluster.fake_lm.reset()
    script_rules(cluster)
    run = cluster.client.optimize(
        make(),
        dspyq.ChainOfThought("question -> answer"),
        trainset=examples(TRAIN),
        lm="openai/m",
        compile_options=options,
    )
    assert run.wait(timeout=120) == "succeeded", run.record().stop_reason

    compiled = run.result()
    assert shape(compiled) == shape(local)
    assert any(d for _, _, d in shape(compiled))  # the compile chose demos
    record = run.record()
    assert record.optimizer == name and record.iterations == 1
    events = [
        e.event_type
        for e in EventStore(cluster.client.engine).by_correlation(record.correlation_id)
    ]
    assert "optimization_complete" in events and "lm_request" in events


def test_infer_rules_puts_the_induced_rules_in_the_instructions(cluster: Cluster) -> None:
    script_rules(cluster)
    run = cluster.client.optimize(
        CASES["InferRules"][0](),
        dspyq.Predict("question -> answer"),
        trainset=examples(TRAIN),
        valset=examples(VAL),
        lm="openai/m",
    )
    assert run.wait(timeout=120) == "succeeded", run.record().stop_reason
    (predictor,) = run.result().predictors()
    assert str(predictor.signature.instructions).endswith(RULES)


def vectors(texts: list[str]) -> Any:
    return np.array([[len(t), t.count("a")] for t in texts], dtype=np.float32)


def test_knn_fewshot_is_refused_before_a_run_is_recorded(cluster: Cluster) -> None:
    optimizer = dspyq.KNNFewShot(k=2, trainset=examples(TRAIN), vectorizer=vectors)
    with pytest.raises(dspyq.errors.InputError, match="KNNFewShot cannot run on the queue"):
        cluster.client.optimize(
            optimizer,
            dspyq.Predict("question -> answer"),
            trainset=examples(TRAIN),
            lm="openai/m",
            metric=answer_exact_match,
        )
    assert RunStore(cluster.client.engine).list() == []
