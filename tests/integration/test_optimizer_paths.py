"""Each optimizer gives the same program in-process and on the queue.

Optimizers with a round strategy walk it on the queue as rounds of tasks; the others
(InferRules, BootstrapFewShotWithOptuna, SIMBA, GEPA) are rebuilt on a worker from the settings the
client captured and run their whole ``compile`` as one task.

The same optimizer, seed, data and scripted fake LM run once through ``compile()`` and
once through ``client.optimize(...)`` (a coordinator, a provider pool, real Redis and
SQL): both walk the optimizer's one round strategy, so the compiled programs hold the
same demos and instructions. The fake LM is reset and scripted again between the two,
so answers that cycle (proposals) come in the same order both times.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from evaluation_metrics import feedback_exact_match
from optimizer_programs import ThreeStep, TwoStep
from test_optimization_runs import (
    TRAIN,
    VAL,
    examples,
    mipro,
    script_capitals,
    script_copro,
    script_mipro,
)

import dspyq
from dspyq.metrics import answer_exact_match
from dspyq.store.events import EventStore
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration

MIPRO_VAL = ["Chile", "Egypt", "Peru", "Kenya"]
MIPRO_OPTIONS = {"num_trials": 6, "minibatch_size": 2, "minibatch_full_eval_steps": 3}
HERE = Path(__file__).resolve().parent


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    # Workers import this directory's modules (the multi-predictor programs).
    cluster, server = make_cluster(tmp_path, sqlite_url, PYTHONPATH=str(HERE))
    cluster.start_worker("lm", concurrency=4)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)
    try:
        yield cluster
    finally:
        cluster.stop()
        server.stop()


CASES: dict[str, tuple[Callable[[Cluster], None], Callable[[dspyq.LM], Any], list[str]]] = {
    "LabeledFewShot": (script_capitals, lambda lm: dspyq.LabeledFewShot(k=2), VAL),
    "BootstrapFewShot": (
        script_capitals,
        lambda lm: dspyq.BootstrapFewShot(metric=answer_exact_match, max_bootstrapped_demos=2),
        VAL,
    ),
    "BootstrapFewShotWithRandomSearch": (
        script_capitals,
        lambda lm: dspyq.BootstrapFewShotWithRandomSearch(
            metric=answer_exact_match,
            max_bootstrapped_demos=2,
            max_labeled_demos=2,
            num_candidate_programs=3,
        ),
        VAL,
    ),
    "COPRO": (
        script_copro,
        lambda lm: dspyq.COPRO(metric=answer_exact_match, breadth=4, depth=2),
        VAL,
    ),
    "MIPROv2": (script_mipro, mipro, MIPRO_VAL),
}


def shape(program: dspyq.Module) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """What compiling decides: each predictor's instruction and demos."""
    return [
        (name, str(p.signature.instructions), [dict(d.items()) for d in p.demos])
        for name, p in program.named_predictors()
    ]


@pytest.mark.parametrize("name", list(CASES))
def test_the_queue_compiles_the_program_compile_does(cluster: Cluster, name: str) -> None:
    script, make, val = CASES[name]
    lm = dspyq.LM("openai/m", api_base=cluster.fake_lm.openai_base, api_key="k", cache=False)
    options = MIPRO_OPTIONS if name == "MIPROv2" else {}

    cluster.fake_lm.reset()
    script(cluster)
    with dspyq.context(lm=lm):
        local = make(lm).compile(
            dspyq.ChainOfThought("question -> answer"),
            trainset=examples(TRAIN),
            valset=examples(val),
            **options,
        )

    cluster.fake_lm.reset()
    script(cluster)
    run = cluster.client.optimize(
        make(lm),
        dspyq.ChainOfThought("question -> answer"),
        trainset=examples(TRAIN),
        valset=examples(val),
        lm="openai/m",
        metric=answer_exact_match,
        **({"compile_options": options} if options else {}),  # type: ignore[arg-type]
    )
    assert run.wait(timeout=120) == "succeeded", run.record().stop_reason

    assert shape(run.result()) == shape(local)


def question(index: int) -> str:
    return f"<q{index:02d}>"


def script_steps(cluster: Cluster, size: int, right: set[int]) -> None:
    """Every field the steps ask for, keyed on the question of the request's last message
    (demos in the prompt hold other questions); the answer is right for ``right``."""
    for i in range(size):
        cluster.fake_lm.answer_fields(
            {
                "reasoning": f"thinking about {i}",
                "draft": f"draft {i}",
                "verdict": f"verdict {i}",
                "revised": f"revised {i}",
                "answer": f"a{i}" if i in right else "wrong",
            },
            match=rf"{question(i)}(?:(?!<q\d\d>).)*Respond with",
        )


def steps_examples(indices: range) -> list[dspyq.Example]:
    return [
        dspyq.Example(question=question(i), answer=f"a{i}").with_inputs("question") for i in indices
    ]


@pytest.mark.parametrize(
    ("program", "size", "bootstrapped", "labeled"),
    [(TwoStep, 7, 2, 4), (ThreeStep, 9, 1, 3)],
)
def test_the_queue_gives_every_predictor_the_demos_compile_does(
    cluster: Cluster, program: type[dspyq.Module], size: int, bootstrapped: int, labeled: int
) -> None:
    """The labelled demos of the second and later predictors are drawn on the coordinator
    as in-process (and as DSPy draws them)."""
    lm = dspyq.LM("openai/m", api_base=cluster.fake_lm.openai_base, api_key="k", cache=False)
    right = {i for i in range(size + 2) if i % 3 != 1}
    trainset, valset = steps_examples(range(size)), steps_examples(range(size, size + 2))
    options = {"max_bootstrapped_demos": bootstrapped, "max_labeled_demos": labeled}

    script_steps(cluster, size + 2, right)
    with dspyq.context(lm=lm):
        local = dspyq.BootstrapFewShot(metric=answer_exact_match, **options).compile(
            program(), trainset=trainset
        )
    run = cluster.client.optimize(
        dspyq.BootstrapFewShot(metric=answer_exact_match, **options),
        program(),
        trainset=trainset,
        valset=valset,
        lm="openai/m",
        metric=answer_exact_match,
    )
    assert run.wait(timeout=120) == "succeeded", run.record().stop_reason

    demos = shape(local)
    assert shape(run.result()) == demos
    # DSPy's draw: every predictor samples the whole shuffled pool of untraced examples,
    # one ``random.Random(0)`` for all of them in ``named_predictors()`` order.
    traced = {d["question"] for _, _, ds in demos for d in ds if d.get("augmented")}
    pool = [dict(x.items()) for x in trainset if x.question not in traced]
    random.Random(0).shuffle(pool)
    rng = random.Random(0)
    labelled = [[d for d in ds if not d.get("augmented")] for _, _, ds in demos]
    assert len(labelled) >= 2 and labelled == [rng.sample(pool, len(ds)) for ds in labelled]
    assert all(len(ds) == labeled - bootstrapped for ds in labelled)


# Optimizers without a round strategy: their whole compile is one queued task.

RULES = "Answer with the capital city only."


def script_rules(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields(
        {"reasoning": "They ask for capitals.", "natural_language_rules": RULES},
        match="examples_text",
    )
    script_capitals(cluster)


WHOLE_COMPILE: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {
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
    "SIMBA": (
        lambda: dspyq.SIMBA(
            metric=answer_exact_match, bsize=2, num_candidates=2, max_steps=2, max_demos=1
        ),
        {"seed": 3},
    ),
    "GEPA": (
        lambda: dspyq.GEPA(
            feedback_exact_match,
            max_metric_calls=12,
            reflection_minibatch_size=2,
            use_merge=False,
            seed=1,
            reflection_lm=dspyq.LM("openai/m", cache=False),
        ),
        {},
    ),
}
CHOOSES_DEMOS = {"InferRules", "BootstrapFewShotWithOptuna"}


@pytest.mark.parametrize("name", list(WHOLE_COMPILE))
def test_the_queue_runs_the_compile_the_process_runs(cluster: Cluster, name: str) -> None:
    make, options = WHOLE_COMPILE[name]
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
    if name in CHOOSES_DEMOS:
        assert any(d for _, _, d in shape(compiled))
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
        WHOLE_COMPILE["InferRules"][0](),
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


def test_knn_fewshot_runs_on_the_queue_and_stores_its_program(cluster: Cluster) -> None:
    script_capitals(cluster)
    make = lambda: dspyq.KNNFewShot(  # noqa: E731
        k=2, trainset=examples(TRAIN), vectorizer=vectors, metric=answer_exact_match
    )
    run = cluster.client.optimize(
        make(),
        dspyq.Predict("question -> answer"),
        trainset=examples(TRAIN),
        lm="openai/m",
        metric=answer_exact_match,
    )
    assert run.wait(timeout=120) == "succeeded", run.record().stop_reason
    stored = run.result()  # the run scored it; compare its calls from here on
    cluster.fake_lm.clear_requests()
    local = make().compile(dspyq.Predict("question -> answer"))
    assert type(stored) is type(local)
    lm = dspyq.LM("openai/m", api_base=cluster.fake_lm.openai_base, api_key="k", cache=False)
    question = "What is the capital of Chile?"
    with dspyq.context(lm=lm):
        here = local(question=question)
        sent = [r["body"]["messages"] for r in cluster.fake_lm.requests]
        cluster.fake_lm.clear_requests()
        there = stored(question=question)
    assert there.answer == here.answer == "Santiago"
    assert len(sent[-1]) > 2  # the answering call shows demos before the question
    assert [r["body"]["messages"] for r in cluster.fake_lm.requests] == sent
