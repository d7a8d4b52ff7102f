"""The AdaptiveOptimizer on real SQL: its choice follows the program's recorded history,
and an in-process compile on the fake LM, or a queued run on real workers, records its
start and outcome (with the student's score before) for the next."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from watch_fixtures import client_on

import dspyq
from dspyq.core.program import program_to_spec
from dspyq.lm.lm import LM
from dspyq.optimize.adaptive import COMPLETED, STARTED, program_fingerprint
from dspyq.store.events import EventStore
from dspyq.tasks.adaptive_history import SQLOptimizationHistory
from dspyq.testing import FakeLMServer
from dspyq.testing.cluster import running_cluster

pytestmark = pytest.mark.integration


def exact(example: dspyq.Example, prediction: dspyq.Prediction, trace: object = None) -> bool:
    return bool(example.answer == prediction.answer)


def fingerprint(program: dspyq.Module) -> str:
    return program_fingerprint(program_to_spec(program).model_dump(mode="json"))


def test_the_choice_changes_with_the_programs_history(store_engine: Engine) -> None:
    history = SQLOptimizationHistory(store_engine)
    optimizer = dspyq.AdaptiveOptimizer(exact, history=history)
    program = dspyq.Predict("question -> answer")
    key = fingerprint(program)

    def choice(size: int = 20) -> str:
        return optimizer.choose(size, history.entries(key)).strategy

    def ran(strategy: str, before: float, after: float, run: str) -> None:
        data = {"fingerprint": key, "strategy": strategy, "trainset_size": 20,
                "baseline_score": before, "final_score": after}  # fmt: skip
        history.emit(COMPLETED, run, data)

    assert choice(size=4) == "LabeledFewShot"
    assert choice() == "BootstrapFewShot"
    ran("BootstrapFewShot", 50.0, 50.0, "r1")  # bootstrapping did not help this program
    low = optimizer.choose(20, history.entries(key))
    assert (low.strategy, low.confidence) == ("COPRO", 0.5)
    assert "falling back to instruction search" in low.reason
    ran("COPRO", 50.0, 80.0, "r2")  # instructions did
    assert choice() == "MIPROv2"
    # Another program's history is its own.
    other = dspyq.ChainOfThought("question -> answer")
    assert optimizer.choose(20, history.entries(fingerprint(other))).strategy == "BootstrapFewShot"


def test_compile_in_process_records_its_choice_and_its_gain(
    store_engine: Engine, fake_lm: FakeLMServer
) -> None:
    fake_lm.answer_fields({"answer": "Paris"})
    history = SQLOptimizationHistory(store_engine)
    student = dspyq.Predict("question -> answer")
    lm = LM("openai/fake", api_base=fake_lm.openai_base, api_key="k", cache=False)
    trainset = [
        dspyq.Example(question=f"capital {n}?", answer="Paris").with_inputs("question")
        for n in range(10)
    ]
    with dspyq.context(lm=lm):
        compiled = dspyq.AdaptiveOptimizer(exact, history=history).compile(
            student, trainset=trainset
        )
    assert compiled.demos and not student.demos
    events = EventStore(store_engine)
    [started] = [e for e in _all(events, STARTED)]
    [done] = events.by_correlation(started.correlation_id or "", event_type=COMPLETED)
    assert (started.data["strategy"], done.data["strategy"]) == ("BootstrapFewShot",) * 2
    assert "no past few-shot run" in started.data["reason"]
    assert (done.data["baseline_score"], done.data["final_score"]) == (100.0, 100.0)
    [entry] = history.entries(fingerprint(student))
    assert (entry.optimizer, entry.gain, entry.trainset_size) == ("BootstrapFewShot", 0.0, 10)


def _all(events: EventStore, event_type: str) -> list[dspyq.events.Event]:  # type: ignore[name-defined]
    from sqlalchemy import select

    from dspyq.store.engine import read_connection
    from dspyq.store.models import EventRecord

    with read_connection(events.engine, "read") as conn:
        ids = [
            c
            for (c,) in conn.execute(
                select(EventRecord.correlation_id).where(EventRecord.event_type == event_type)  # type: ignore[arg-type]
            )
        ]
    return [e for cid in ids for e in events.by_correlation(cid, event_type=event_type)]


def test_a_compile_in_process_changes_the_next_choice(
    store_engine: Engine, fake_lm: FakeLMServer
) -> None:
    fake_lm.answer_fields({"answer": "Paris"})
    history = SQLOptimizationHistory(store_engine)
    optimizer = dspyq.AdaptiveOptimizer(exact, history=history)
    student = dspyq.Predict("question -> answer")
    lm = LM("openai/fake", api_base=fake_lm.openai_base, api_key="k", cache=False)
    assert optimizer.choose(10, history.entries(fingerprint(student))).strategy == (
        "BootstrapFewShot"
    )
    with dspyq.context(lm=lm):
        optimizer.compile(student, trainset=_paris(10))
    # Bootstrapping gained nothing (100% before and after): confidence falls under 0.7.
    after = optimizer.choose(10, history.entries(fingerprint(student)))
    assert (after.strategy, after.confidence) == ("COPRO", 0.5)


def test_a_queued_run_of_one_candidate_records_its_baseline_and_changes_the_next_choice(
    tmp_path: Path, sqlite_url: str
) -> None:
    with running_cluster(tmp_path, sqlite_url, latency=0.0) as cluster:
        cluster.start_worker("lm", pool="openai", concurrency=4)
        cluster.start_worker("opt", pool="optimize", concurrency=2)
        cluster.fake_lm.answer_fields({"answer": "Paris"})
        with client_on(cluster, sqlite_url) as client:
            student = dspyq.Predict("question -> answer")
            optimizer = dspyq.AdaptiveOptimizer("dspyq.metrics:answer_exact_match")
            run = client.optimize(optimizer, student, trainset=_paris(10), lm="openai/m")
            assert run.choice["strategy"] == "BootstrapFewShot"  # type: ignore[attr-defined]
            assert run.wait(timeout=120) == "succeeded"
            history = SQLOptimizationHistory(client.engine)
            [entry] = history.entries(fingerprint(student))
            assert (entry.baseline_score, entry.final_score, entry.gain) == (100.0, 100.0, 0.0)
            nxt = client.optimize(optimizer, student, trainset=_paris(10), lm="openai/m")
            assert nxt.choice["strategy"] == "COPRO"  # type: ignore[attr-defined]
            nxt.cancel()


def _paris(count: int) -> list[dspyq.Example]:
    return [
        dspyq.Example(question=f"capital {n}?", answer="Paris").with_inputs("question")
        for n in range(count)
    ]
