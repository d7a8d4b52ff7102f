"""BootstrapFinetune and BetterTogether on the queue give the program ``compile()`` gives.

The same sums, metric and scripted fake server run once in-process (the student's
predictors set to an LM with the test's key) and once through ``client.optimize(...)``,
where the worker gives the student its own LM for the run's model (its provider
settings and key) and fine-tunes through the fake server's OpenAI endpoints. The
server keeps every uploaded training file, so the bytes each side sent are compared
directly; the fine-tuned model it names then answers jobs submitted with the stored
program.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dspyq
from dspyq.metrics import answer_exact_match
from dspyq.testing.cluster import SECRET_KEY, Cluster, make_cluster

pytestmark = pytest.mark.integration

SUMS = [(f"{a}+{b}", str(a + b)) for a, b in zip(range(12), range(3, 15), strict=True)]
WRONG = {"4+7"}  # the model gets this one wrong, so the metric drops its trace
ASKED = ("20+22", "42")  # outside the trainset: no worker cache holds its answer
MODEL = "openai/gpt-4o-mini"


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        DSPYQ_FINETUNE_POLL_INTERVAL="0.05",
        DSPYQ_FINETUNEDIR=str(tmp_path / "worker-files"),
    )
    cluster.start_worker("lm", concurrency=4)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)
    try:
        yield cluster
    finally:
        cluster.stop()
        server.stop()


def script_sums(cluster: Cluster) -> None:
    """Each sum's answer, keyed on the last question of the request (demos hold others)."""
    cluster.fake_lm.configure(finetune_seconds=0.1, finetune_min_examples=1)
    for question, answer in [*SUMS, ASKED]:
        reply = "0" if question in WRONG else answer
        last = re.escape(f"## question ## ]]\n{question}\n") + r"(?:(?!## question ##).)*$"
        cluster.fake_lm.answer_fields({"answer": reply}, match=last)


def trainset() -> list[dspyq.Example]:
    return [dspyq.Example(question=q, answer=a).with_inputs("question") for q, a in SUMS]


def uploads(cluster: Cluster) -> list[bytes]:
    return [f.content for f in cluster.fake_lm.state.finetunes.files.values()]


def structure(program: dspyq.Module) -> list[Any]:
    """Each predictor's model (job ids made generic), demos and instructions."""
    return [
        (
            name,
            re.sub(r"ftjob-\w+", "JOB", p.lm.model),
            [dict(d.items()) for d in p.demos],
            p.signature.instructions,
        )
        for name, p in program.named_predictors()
        if not name.startswith("candidate_programs")
    ]


def compile_locally(
    cluster: Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    optimizer: Any,
    **options: Any,
) -> dspyq.Module:
    monkeypatch.setenv("DSPYQ_FINETUNEDIR", str(tmp_path / "local-files"))
    lm = dspyq.LM(MODEL, api_base=cluster.fake_lm.openai_base, api_key="k", cache=False)
    student = dspyq.ChainOfThought("question -> answer")
    student.set_lm(lm)
    # Bound too: bootstrapping's teacher copies are reset, LM-less (as in DSPy).
    with dspyq.context(lm=lm, finetune_poll_interval=0.05):
        compiled: dspyq.Module = optimizer.compile(student, trainset=trainset(), **options)
    return compiled


def optimize_on_queue(
    cluster: Cluster, tmp_path: Path, optimizer: Any, **options: Any
) -> dspyq.Module:
    # From here the server takes only the worker's key: uploads and jobs included.
    cluster.fake_lm.configure(api_key=SECRET_KEY)
    run = cluster.client.optimize(
        optimizer,
        dspyq.ChainOfThought("question -> answer"),
        trainset=trainset(),
        lm=MODEL,
        metric=answer_exact_match,
        compile_options=options,
    )
    assert run.wait(timeout=180) == "succeeded", run.record().stop_reason
    result: dspyq.Module = run.result()
    # The stored program names the fine-tuned models, never the worker's key or endpoint.
    record = run.record()
    saved = (record.checkpoint or {})["saved"]
    exported = cluster.client.export_program(saved["name"], saved["version"], tmp_path / "p.json")
    stored = exported.read_text() + json.dumps(record.checkpoint)
    assert SECRET_KEY not in stored and cluster.fake_lm.openai_base not in stored
    states = [s for s in json.loads(exported.read_text()).values() if "lm" in s]
    assert states and all(s["lm"]["model"].startswith("ft:") for s in states)
    return result


def answers(cluster: Cluster, program: dspyq.Module, question: str) -> str:
    """A job's answer, checked to come from the program's fine-tuned model."""
    cluster.fake_lm.clear_requests()
    job = cluster.client.submit(program, lm=MODEL, question=question)
    answer = str(job.result(timeout=60)["answer"])
    models = {entry["body"]["model"] for entry in cluster.fake_lm.requests}
    assert models == {program.predictors()[0].lm.model.removeprefix("openai/")}
    return answer


@pytest.mark.parametrize("options", [{}, {"train_kwargs": {"n_epochs": 2}, "exclude_demos": True}])
def test_bootstrap_finetune_on_the_queue_fine_tunes_as_compile_does(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    script_sums(cluster)
    local = compile_locally(
        cluster, tmp_path, monkeypatch, dspyq.BootstrapFinetune(answer_exact_match, **options)
    )
    (local_file,) = uploads(cluster)

    queued = optimize_on_queue(
        cluster, tmp_path, dspyq.BootstrapFinetune(answer_exact_match, **options)
    )
    (queued_file,) = uploads(cluster)[1:]

    assert queued_file == local_file
    assert queued_file.count(b"\n") == len(SUMS) - len(WRONG)
    assert structure(queued) == structure(local)
    (predictor,) = queued.predictors()
    first, second = cluster.fake_lm.state.finetunes.jobs.values()
    assert predictor.lm.model == f"ft:gpt-4o-mini:dspyq::{second.id}"
    assert (second.model, second.hyperparameters) == (first.model, first.hyperparameters)
    assert answers(cluster, queued, ASKED[0]) == ASKED[1]


def test_better_together_runs_its_strategy_on_the_queue(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def make() -> Any:
        return dspyq.BetterTogether(
            answer_exact_match,
            p=dspyq.BootstrapFewShotWithRandomSearch(
                metric=answer_exact_match, max_bootstrapped_demos=1, num_candidate_programs=1
            ),
            w=dspyq.BootstrapFinetune(answer_exact_match),
        )

    # No valset: the latest program (the fine-tuned one) is returned, not the best.
    options = {"strategy": "p -> w", "seed": 0, "valset_ratio": 0}
    script_sums(cluster)
    local = compile_locally(cluster, tmp_path, monkeypatch, make(), **options)
    (local_file,) = uploads(cluster)

    queued = optimize_on_queue(cluster, tmp_path, make(), **options)
    (queued_file,) = uploads(cluster)[1:]

    assert queued_file == local_file
    assert structure(queued) == structure(local)
    assert queued.predictors()[0].lm.model.startswith("ft:gpt-4o-mini:dspyq::")
    assert answers(cluster, queued, ASKED[0]) == ASKED[1]
