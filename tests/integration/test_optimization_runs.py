"""Optimization runs on the queue: a coordinator worker, a provider pool, real Redis and SQL.

The fake model knows a capital only when the prompt already shows a worked example (a
demo's ``[[ ## answer ## ]]`` followed by a value comes before the question), so the
uncompiled program scores 0% and any candidate with demos 100%: a run must find one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dspyq
from dspyq.api_client.runs import Run
from dspyq.metrics import answer_exact_match
from dspyq.optimize.random_search import BootstrapFewShotWithRandomSearch
from dspyq.store.lm_requests import LMRequestStore
from dspyq.store.runs import RunStore
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration

VISIBILITY_TIMEOUT = 6
CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Chile": "Santiago",
    "Egypt": "Cairo",
    "Canada": "Ottawa",
    "Brazil": "Brasilia",
    "Peru": "Lima",
    "Kenya": "Nairobi",
}
TRAIN = ["France", "Japan", "Italy", "Spain"]
VAL = ["Chile", "Egypt"]
HELD_OUT = ["Canada", "Brazil"]
DEMO_ANSWER = r"\[\[ ## answer ## \]\]\n[A-Z]"
MAGIC = "Name the capital city"


def examples(countries: list[str]) -> list[dspyq.Example]:
    return [
        dspyq.Example(question=f"What is the capital of {c}?", answer=CAPITALS[c]).with_inputs(
            "question"
        )
        for c in countries
    ]


def script_capitals(cluster: Cluster) -> None:
    for country, capital in CAPITALS.items():
        cluster.fake_lm.answer_fields(
            {"reasoning": f"It is {capital}.", "answer": capital},
            match=rf"(?:{DEMO_ANSWER}.*){{1}}capital of {country}\?\n\nRespond with",
        )
    cluster.fake_lm.answer_fields({"reasoning": "I do not know.", "answer": "unknown"})


def held_out_score(cluster: Cluster, program: dspyq.Module) -> float:
    lm = dspyq.LM("openai/m", api_base=cluster.fake_lm.openai_base, api_key="k", cache=False)
    with dspyq.context(lm=lm):
        evaluate = dspyq.Evaluate(devset=examples(HELD_OUT), metric=answer_exact_match)
        return float(evaluate(program).score)


def random_search() -> BootstrapFewShotWithRandomSearch:
    # Seeds -3 (zero-shot), -2 (labelled), -1 (bootstrapped), 0, 1: three rounds of two.
    return BootstrapFewShotWithRandomSearch(
        metric=answer_exact_match,
        max_bootstrapped_demos=2,
        max_labeled_demos=2,
        num_candidate_programs=2,
    )


def start(cluster: Cluster, **options: object) -> Run:
    return cluster.client.optimize(
        random_search(),
        dspyq.ChainOfThought("question -> answer"),
        trainset=examples(TRAIN),
        valset=examples(VAL),
        lm="openai/m",
        candidates_per_round=2,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.02,
        DSPYQ_BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
    )
    cluster.settings.broker_visibility_timeout = VISIBILITY_TIMEOUT
    try:
        yield cluster
    finally:
        cluster.stop()
        server.stop()


def test_random_search_run_raises_the_held_out_score_and_is_recorded(cluster: Cluster) -> None:
    script_capitals(cluster)
    cluster.start_worker("lm", concurrency=4)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)
    program = dspyq.ChainOfThought("question -> answer")

    run = start(cluster, run_name="capitals")
    assert run.wait(timeout=60, progress=True) == "succeeded"
    compiled = run.result()

    assert held_out_score(cluster, program) == 0.0
    assert held_out_score(cluster, compiled) == 100.0
    record = run.record()
    assert (record.optimizer, record.status, record.iterations, record.best_score) == (
        "BootstrapFewShotWithRandomSearch",
        "succeeded",
        5,
        100.0,
    )
    assert record.program == "dspyq.core.chain_of_thought:ChainOfThought"
    assert record.config["settings"]["num_candidate_programs"] == 2
    assert record.finished_at is not None and record.stop_reason == "every candidate evaluated"
    assert run.progress()["total"] == 5
    iterations = [
        e for e in cluster.client.events(record.correlation_id)
        if e.event_type == "optimization_iteration"
    ]  # fmt: skip
    assert sorted(e.data["iteration"] for e in iterations) == [1, 2, 3, 4, 5]
    by_seed = {e.data["seed"]: e.data for e in iterations}
    assert by_seed[-3]["evaluation_score"] == 0.0  # the zero-shot student
    assert by_seed[-2]["evaluation_score"] == 100.0  # labelled demos
    assert all(d["metric"] == "dspyq.optimize.metrics:answer_exact_match" for d in by_seed.values())
    assert all(d["optimization_id"] == run.id for d in by_seed.values())
    assert all(isinstance(d["candidate_instruction"], str) for d in by_seed.values())
    [saved] = cluster.client.list_programs("capitals")
    assert (saved.version, saved.score, saved.run_id) == (1, 100.0, run.id)


def test_budget_stops_the_run_and_keeps_its_best_program(cluster: Cluster) -> None:
    script_capitals(cluster)
    cluster.start_worker("lm", concurrency=4)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)

    run = start(cluster, max_lm_calls=1)
    assert run.wait(timeout=60) == "budget_exhausted"

    record = run.record()
    assert record.iterations == 2  # the first round, then the budget was spent
    assert record.stop_reason is not None and "max_lm_calls" in record.stop_reason
    assert record.best_score == 100.0
    assert held_out_score(cluster, run.result()) == 100.0
    assert [p.run_id for p in cluster.client.list_programs(f"run-{run.id}")] == [run.id]


def test_killed_coordinator_resumes_from_its_checkpoint(cluster: Cluster) -> None:
    script_capitals(cluster)
    cluster.fake_lm.configure(latency=0.15)  # rounds long enough to kill the coordinator in between
    cluster.start_worker("lm", concurrency=4)
    victim = cluster.start_worker("victim", pool="optimize", concurrency=1)

    run = start(cluster)
    deadline = time.monotonic() + 60
    while run.progress()["rounds_done"] < 1:
        assert time.monotonic() < deadline, "the first round never finished"
        time.sleep(0.05)
    cluster.kill("victim")
    assert run.status == "running"
    cluster.start_worker("replacement", pool="optimize", concurrency=1)

    assert run.wait(timeout=60) == "succeeded"
    record = run.record()
    assert (record.iterations, record.best_score) == (5, 100.0)
    iterations = [
        e for e in cluster.client.events(record.correlation_id)
        if e.event_type == "optimization_iteration"
    ]  # fmt: skip
    assert sorted(e.data["iteration"] for e in iterations) == [1, 2, 3, 4, 5]
    assert max(iterations, key=lambda e: e.data["iteration"]).pid != victim.pid
    assert held_out_score(cluster, run.result()) == 100.0


def _closure_metric() -> object:
    def metric(example: dspyq.Example, prediction: dspyq.Prediction) -> bool:
        return bool(example.answer == prediction.answer)

    return metric


@pytest.mark.parametrize(
    ("optimizer", "problem"),
    [
        (BootstrapFewShotWithRandomSearch(metric=lambda e, p: True), "lambda"),
        (BootstrapFewShotWithRandomSearch(metric=_closure_metric()), "inside a function"),  # type: ignore[arg-type]
        (
            dspyq.MIPROv2(
                metric=answer_exact_match,
                prompt_model=dspyq.LM("openai/m", api_key="k"),
                task_model=dspyq.LM("openai/m", api_key="k"),
                num_candidates=3,
            ),
            "num_candidates and num_trials cannot be set",
        ),
        (dspyq.LabeledFewShot(k=2), "no metric"),
    ],
)
def test_a_run_that_workers_could_not_carry_out_is_refused_before_it_is_recorded(
    cluster: Cluster, optimizer: object, problem: str
) -> None:
    with pytest.raises(dspyq.errors.InputError, match=problem):
        cluster.client.optimize(
            optimizer,  # type: ignore[arg-type]
            dspyq.ChainOfThought("question -> answer"),
            trainset=examples(TRAIN),
            lm="openai/m",
        )
    assert RunStore(cluster.client.engine).list() == []


def test_bootstrap_few_shot_runs_as_a_single_round(cluster: Cluster) -> None:
    script_capitals(cluster)
    cluster.start_worker("lm", concurrency=4)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)

    run = cluster.client.optimize(
        dspyq.BootstrapFewShot(metric=answer_exact_match, max_bootstrapped_demos=2),
        dspyq.ChainOfThought("question -> answer"),
        trainset=examples(TRAIN),
        valset=examples(VAL),
        lm="openai/m",
    )
    assert run.wait(timeout=60) == "succeeded"

    assert run.progress()["iterations"] == run.progress()["total"] == 1
    assert run.record().best_score == 100.0
    assert held_out_score(cluster, run.result()) == 100.0


def test_one_candidate_is_bootstrapped_and_scored_by_several_tasks_on_both_workers(
    cluster: Cluster,
) -> None:
    # A BootstrapFewShot run is one candidate; its valset of 8 (2 parts of the run's 4
    # threads) is scored by two tasks, which two workers of one slot each take.
    script_capitals(cluster)
    cluster.fake_lm.configure(latency=0.2)
    workers = [cluster.start_worker(f"lm{i}", concurrency=1) for i in (1, 2)]
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)

    run = cluster.client.optimize(
        dspyq.BootstrapFewShot(metric=answer_exact_match, max_bootstrapped_demos=2),
        dspyq.ChainOfThought("question -> answer"),
        trainset=examples(TRAIN),
        valset=examples([c for c in CAPITALS if c not in HELD_OUT]),
        lm="openai/m",
    )
    assert run.wait(timeout=60) == "succeeded"

    record = run.record()
    assert (record.iterations, record.best_score) == (1, 100.0)
    calls = LMRequestStore(cluster.client.engine).by_correlation(record.correlation_id)
    assert len(calls) == len(TRAIN) + 8  # each example once: no part ran twice
    assert len({c.task_id for c in calls}) == 3  # one bootstrap window, two valset parts
    lm_events = [
        e for e in cluster.client.events(record.correlation_id) if e.event_type == "lm_request"
    ]
    assert {e.pid for e in lm_events} == {w.pid for w in workers}
    assert held_out_score(cluster, run.result()) == 100.0


def test_bootstrapping_that_needs_a_second_wave_finds_the_demos_of_the_ordered_walk(
    cluster: Cluster,
) -> None:
    # A wave bootstraps 12 windows of 4 examples (48); only questions 50 and 51 are
    # answered right, so the walk needs a second wave and takes those two as demos.
    squares = [
        dspyq.Example(question=f"What is {i} squared?", answer=str(i * i)).with_inputs("question")
        for i in range(1, 57)
    ]
    for i in (50, 51):
        cluster.fake_lm.answer_fields({"answer": str(i * i)}, match=rf"What is {i} squared\?\n\n")
    cluster.fake_lm.answer_fields({"answer": "unknown"})
    cluster.start_worker("lm", concurrency=4)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)

    run = cluster.client.optimize(
        dspyq.BootstrapFewShot(
            metric=answer_exact_match, max_bootstrapped_demos=2, max_labeled_demos=2
        ),
        dspyq.Predict("question -> answer"),
        trainset=squares[:52],
        valset=squares[52:],
        lm="openai/m",
    )
    assert run.wait(timeout=60) == "succeeded"

    record = run.record()
    calls = LMRequestStore(cluster.client.engine).by_correlation(record.correlation_id)
    assert len(calls) == 52 + 4  # both waves, then the valset
    (predictor,) = run.result().predictors()
    assert [d["question"] for d in predictor.demos if d.get("augmented")] == [
        "What is 50 squared?",
        "What is 51 squared?",
    ]
    assert record.checkpoint is not None and record.checkpoint.get("bootstrap") is None


def test_a_cancelled_run_never_starts_and_has_no_result(cluster: Cluster) -> None:
    run = start(cluster)  # no coordinator is up yet: the run waits in its queue
    assert run.status == "pending"
    assert run.cancel() is True
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)
    time.sleep(1.0)  # the coordinator takes the start message and finds the run cancelled

    assert run.status == "cancelled"
    assert run.cancel() is False  # already ended
    with pytest.raises(dspyq.errors.JobCancelledError):
        run.result(timeout=5)
    assert cluster.client.list_programs() == []


def proposal(instruction: str, prefix: str) -> str:
    return (
        f"[[ ## proposed_instruction ## ]]\n{instruction}\n\n"
        f"[[ ## proposed_prefix_for_output_field ## ]]\n{prefix}\n\n[[ ## completed ## ]]"
    )


def script_copro(cluster: Cluster) -> None:
    """Right only with the magic instruction; round two proposes other ideas."""
    fake = cluster.fake_lm
    fake.add_rule(
        r"\[\[ ## basic_instruction ## \]\]",
        answers=[
            proposal("Answer in one word.", "Answer:"),
            proposal(f"{MAGIC} of the country asked about.", "Capital:"),
            proposal("Be careful.", "Answer:"),
        ],
    )
    fake.add_rule(
        r"\[\[ ## attempted_instructions ## \]\]",
        answers=[proposal(f"Round two idea {i}.", "Answer:") for i in range(1, 5)],
    )
    for country, capital in CAPITALS.items():
        fake.answer_fields(
            {"reasoning": f"It is {capital}.", "answer": capital},
            match=rf"{MAGIC}.*capital of {country}\?\n\nRespond with",
        )
    fake.answer_fields({"reasoning": "I do not know.", "answer": "unknown"})


def test_copro_run_finds_the_instruction_that_makes_the_model_right(cluster: Cluster) -> None:
    script_copro(cluster)
    cluster.start_worker("lm", concurrency=4)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)
    program = dspyq.ChainOfThought("question -> answer")

    run = cluster.client.optimize(
        dspyq.COPRO(metric=answer_exact_match, breadth=4, depth=2, init_temperature=1.1),
        program,
        trainset=examples(TRAIN),
        valset=examples(VAL),
        lm="openai/m",
    )
    assert run.wait(timeout=60) == "succeeded"

    record = run.record()
    assert (record.optimizer, record.iterations, record.best_score) == ("COPRO", 8, 100.0)
    iterations = [
        e.data for e in cluster.client.events(record.correlation_id)
        if e.event_type == "optimization_iteration"
    ]  # fmt: skip
    assert sorted(d["iteration"] for d in iterations) == list(range(1, 9))
    best = [d["candidate_instruction"] for d in iterations if d["evaluation_score"] == 100.0]
    assert best == [f"{MAGIC} of the country asked about."]
    assert any("Round two idea" in str(d["candidate_instruction"]) for d in iterations)
    compiled = run.result()
    (predictor,) = compiled.predictors()
    assert predictor.signature.instructions.startswith(MAGIC)
    assert held_out_score(cluster, program) == 0.0
    assert held_out_score(cluster, compiled) == 100.0


PROPOSALS = ["Answer with care.", "Be concise.", f"{MAGIC} of the country asked about."]


def script_mipro(cluster: Cluster) -> None:
    """Right only with the magic instruction AND a worked example in the prompt."""
    fake = cluster.fake_lm
    fake.add_rule(
        r"\[\[ ## proposed_instruction ## \]\]",
        answers=[
            f"[[ ## proposed_instruction ## ]]\n{text}\n\n[[ ## completed ## ]]"
            for text in PROPOSALS
        ],
    )
    for country, capital in CAPITALS.items():
        fake.answer_fields(
            {"reasoning": f"It is {capital}.", "answer": capital},
            match=rf"{MAGIC}.*{DEMO_ANSWER}.*capital of {country}\?\n\nRespond with",
        )
    fake.answer_fields(
        {"reasoning": "I do not know.", "answer": "unknown"}, match=r"capital of \w+\?"
    )


def mipro(lm: dspyq.LM | None = None) -> dspyq.MIPROv2:
    """The search the MIPROv2 tests run (a queued run uses the client's lm=, not ``lm``)."""
    lm = lm or dspyq.LM("openai/m", api_key="k")
    return dspyq.MIPROv2(
        metric=answer_exact_match,
        prompt_model=lm,
        task_model=lm,
        auto=None,
        num_candidates=3,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
    )


def start_mipro(cluster: Cluster, **options: object) -> Run:
    return cluster.client.optimize(
        mipro(),
        dspyq.ChainOfThought("question -> answer"),
        trainset=examples(TRAIN),
        valset=examples(["Chile", "Egypt", "Peru", "Kenya"]),
        lm="openai/m",
        compile_options={"num_trials": 10, "minibatch_size": 2, "minibatch_full_eval_steps": 3},
        **options,  # type: ignore[arg-type]
    )


def test_mipro_run_searches_instructions_and_demo_sets_on_the_queue(cluster: Cluster) -> None:
    script_mipro(cluster)
    cluster.start_worker("lm", concurrency=4)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)
    program = dspyq.ChainOfThought("question -> answer")

    run = start_mipro(cluster, run_name="mipro")
    assert run.wait(timeout=90) == "succeeded", run.record().stop_reason

    record = run.record()
    # The default program, 10 minibatch trials, and ceil(10 / 3) full evaluations.
    assert (record.optimizer, record.iterations, record.best_score) == ("MIPROv2", 15, 100.0)
    assert run.progress()["total"] == 15
    assert record.stop_reason == "every trial evaluated"
    trials = [
        e.data for e in cluster.client.events(record.correlation_id)
        if e.event_type == "optimization_iteration"
    ]  # fmt: skip
    assert sorted(d["iteration"] for d in trials) == list(range(1, 16))
    assert sum(1 for d in trials if d["full_eval"]) == 5
    assert all(set(d["params"]) == {"0_predictor_instruction", "0_predictor_demos"} for d in trials)
    winners = [d for d in trials if d["full_eval"] and d["evaluation_score"] == 100.0]
    assert winners and all(d["params"]["0_predictor_instruction"] == 2 for d in winners)
    assert all(d["params"]["0_predictor_demos"] != 0 for d in winners)  # set 0 has no demos
    compiled = run.result()
    (predictor,) = compiled.predictors()
    assert predictor.signature.instructions.startswith(MAGIC) and predictor.demos
    assert held_out_score(cluster, program) == 0.0
    assert held_out_score(cluster, compiled) == 100.0


def test_a_coordinator_dead_right_after_sending_a_round_loses_and_repeats_nothing(
    cluster: Cluster,
) -> None:
    """The replacement merges the round the dead coordinator sent and plans the next from
    counters that include it (it used to plan again from counters that did not: trial
    numbers repeated and extra trials ran)."""
    script_mipro(cluster)
    cluster.start_worker("lm", concurrency=4)
    crashing = subprocess.Popen(
        [
            sys.executable, str(Path(__file__).with_name("coordinator_crash.py")), "worker",
            "--pool", "optimize", "--concurrency", "1", "--hostname", "crashing@%h",
        ],
        env={**cluster.env, "DSPYQ_TEST_CRASH_AFTER_ROUND": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    cluster.workers["crashing"] = crashing
    run = start_mipro(cluster)
    assert crashing.wait(timeout=60) == -signal.SIGKILL
    assert run.progress()["rounds_done"] == 2  # round 2 was sent, not merged
    cluster.start_worker("replacement", pool="optimize", concurrency=1)

    assert run.wait(timeout=90) == "succeeded", run.record().stop_reason
    record = run.record()
    assert (record.iterations, record.best_score) == (15, 100.0)
    numbers = [t["number"] for t in (record.checkpoint or {})["state"]["results"]]
    assert sorted(numbers) == list(range(1, 16))
    trials = [
        e for e in cluster.client.events(record.correlation_id)
        if e.event_type == "optimization_iteration"
    ]  # fmt: skip
    assert sorted(e.data["iteration"] for e in trials) == list(range(1, 16))


def test_killed_coordinator_resumes_a_mipro_search(cluster: Cluster) -> None:
    script_mipro(cluster)
    cluster.fake_lm.configure(latency=0.15)
    cluster.start_worker("lm", concurrency=4)
    victim = cluster.start_worker("victim", pool="optimize", concurrency=1)

    run = start_mipro(cluster)
    deadline = time.monotonic() + 60
    while run.progress()["rounds_done"] < 2:
        assert time.monotonic() < deadline, "the search never got going"
        time.sleep(0.05)
    cluster.kill("victim")
    cluster.start_worker("replacement", pool="optimize", concurrency=1)

    assert run.wait(timeout=90) == "succeeded", run.record().stop_reason
    record = run.record()
    assert (record.iterations, record.best_score) == (15, 100.0)
    trials = [
        e for e in cluster.client.events(record.correlation_id)
        if e.event_type == "optimization_iteration"
    ]  # fmt: skip
    assert sorted(e.data["iteration"] for e in trials) == list(range(1, 16))
    assert max(trials, key=lambda e: e.data["iteration"]).pid != victim.pid


def test_budget_stops_a_mipro_search_and_keeps_its_best_so_far(cluster: Cluster) -> None:
    script_mipro(cluster)
    cluster.start_worker("lm", concurrency=4)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)

    run = start_mipro(cluster, max_lm_calls=24)  # the whole search takes 37
    assert run.wait(timeout=60) == "budget_exhausted"

    record = run.record()
    assert record.stop_reason is not None and "max_lm_calls" in record.stop_reason
    assert 0 < record.iterations < 15
    # Candidates check the spend before they start and between chunks of examples, so
    # the run overshoots by less than one round's examples.
    assert 24 <= run.progress()["lm_calls"] < 24 + 4 * 4
    trials = [
        e.data for e in cluster.client.events(record.correlation_id)
        if e.event_type == "optimization_iteration"
    ]  # fmt: skip
    assert all("max_lm_calls" in d["error"] for d in trials if d["error"])
    assert record.best_score == 0.0  # the unchanged program, fully scored, is the best so far
    (predictor,) = run.result().predictors()
    assert predictor.signature.instructions == program_instructions()


def program_instructions() -> str:
    (predictor,) = dspyq.ChainOfThought("question -> answer").predictors()
    return str(predictor.signature.instructions)


def test_a_whole_compile_killed_part_way_runs_again_on_another_worker(cluster: Cluster) -> None:
    """An optimizer without a round strategy has no checkpoint inside its one compile task:
    the task, redelivered after its worker died, compiles from the start."""
    cluster.fake_lm.answer_fields(
        {"reasoning": "r", "natural_language_rules": "Name the city only."}, match="examples_text"
    )
    script_capitals(cluster)
    cluster.fake_lm.configure(latency=0.3)
    cluster.start_worker("coordinator", pool="optimize", concurrency=1)
    cluster.start_worker("victim", concurrency=1)
    run = cluster.client.optimize(
        dspyq.InferRules(metric=answer_exact_match, num_candidates=2, num_rules=2),
        dspyq.ChainOfThought("question -> answer"),
        trainset=examples(TRAIN),
        valset=examples(VAL),
        lm="openai/m",
    )
    deadline = time.monotonic() + 60
    while len(cluster.fake_lm.requests) < 2:
        assert time.monotonic() < deadline, "the compile never started"
        time.sleep(0.05)
    cluster.kill("victim")
    cluster.start_worker("replacement", concurrency=1)

    assert run.wait(timeout=90) == "succeeded", run.record().stop_reason
    record = run.record()
    assert record.iterations == 1
    (predictor,) = run.result().predictors()
    assert str(predictor.signature.instructions).endswith("Name the city only.")
    assert predictor.demos
    # Both workers took the compile task (the replacement's repeated calls hit the cache).
    for worker in ("victim", "replacement"):
        log = (cluster.tmp_path / f"worker-{worker}.log").read_text(errors="replace")
        assert "Task dspyq.optimize.build[" in log, worker
