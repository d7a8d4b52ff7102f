"""Few-shot optimizers against a real LM answered by the fake server.

The fake "model" knows a capital only when the prompt already shows it worked examples:
a question is answered right when at least ``needs`` demo answers
(``[[ ## answer ## ]]`` followed by a value, as demos carry and the prompt's template
does not) come before it, and wrong otherwise. So an uncompiled program scores 0% and a
program given demos by an optimizer scores 100% on questions it never saw.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.context import context
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.errors import InputError, ProviderError
from dspyq.lm import LM
from dspyq.metrics import answer_exact_match
from dspyq.optimize.bootstrap import BootstrapFewShot, BootstrapOutcome, bootstrap_example
from dspyq.optimize.evaluate import Evaluate
from dspyq.optimize.labeled import LabeledFewShot
from dspyq.optimize.random_search import (
    BootstrapFewShotWithRandomSearch,
    CandidateProgram,
    evaluate_candidate,
)
from dspyq.settings import reload_settings
from dspyq.testing.fake_lm import FakeLMServer

CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    # valset
    "Chile": "Santiago",
    "Egypt": "Cairo",
    "Norway": "Oslo",
    # held out
    "Canada": "Ottawa",
    "Brazil": "Brasilia",
    "India": "New Delhi",
}
TRAIN = ["France", "Japan", "Italy", "Spain", "Kenya", "Peru"]
VAL = ["Chile", "Egypt", "Norway"]
HELD_OUT = ["Canada", "Brazil", "India"]

DEMO_ANSWER = r"\[\[ ## answer ## \]\]\n[A-Z]"


def question(country: str) -> str:
    return f"What is the capital of {country}?"


def examples(countries: list[str]) -> list[Example]:
    return [
        Example(question=question(c), answer=CAPITALS[c]).with_inputs("question") for c in countries
    ]


def reasoning(country: str) -> str:
    return f"Recall: the capital of {country} is {CAPITALS[country]}."


def asked(country: str) -> str:
    """Matches the question of the request itself, not a demo's (only it is followed by
    the closing instruction)."""
    return rf"capital of {country}\?\n\nRespond with"


def script_capitals(server: FakeLMServer, needs: int = 1) -> None:
    for country, capital in CAPITALS.items():
        server.answer_fields(
            {"reasoning": reasoning(country), "answer": capital},
            match=rf"(?:{DEMO_ANSWER}.*){{{needs}}}{asked(country)}",
        )
    server.answer_fields({"reasoning": "I do not know.", "answer": "unknown"})


def chat(reasoning_text: str, answer: str) -> str:
    return (
        f"[[ ## reasoning ## ]]\n{reasoning_text}\n\n[[ ## answer ## ]]\n{answer}\n\n"
        "[[ ## completed ## ]]"
    )


@pytest.fixture
def lm(fake_lm: FakeLMServer) -> LM:
    return LM(
        "openai/fake-model", api_base=fake_lm.openai_base, api_key="k", cache=False, num_retries=0
    )


@pytest.fixture
def world(fake_lm: FakeLMServer, lm: LM) -> Iterator[FakeLMServer]:
    script_capitals(fake_lm)
    with context(lm=lm):
        yield fake_lm


@pytest.fixture
def bootstrap_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set ``DSPYQ_OPTIMIZATION__BOOTSTRAP__*`` variables; the settings are re-read after."""

    def set_values(**values: int) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"DSPYQ_OPTIMIZATION__BOOTSTRAP__{key.upper()}", str(value))
        reload_settings()

    yield set_values
    monkeypatch.undo()
    reload_settings()


def score_on(program: Module, countries: list[str]) -> float:
    return Evaluate(devset=examples(countries), metric=answer_exact_match)(program).score


def predictor_of(program: Module) -> Predict:
    """The one predictor of a ChainOfThought (``program.predict``), typed."""
    (predictor,) = program.predictors()
    return predictor


def augmented(predictor: Predict) -> list[Any]:
    return [demo for demo in predictor.demos if demo.get("augmented")]


def raw(predictor: Predict) -> list[Any]:
    return [demo for demo in predictor.demos if not demo.get("augmented")]


class TwoSteps(Module):
    def __init__(self) -> None:
        super().__init__()
        self.draft = Predict("question -> answer")
        self.check = Predict("question, answer -> verdict")


# --- LabeledFewShot ---------------------------------------------------------------------


def test_labeled_fewshot_gives_every_predictor_k_sampled_training_examples() -> None:
    trainset = examples(TRAIN)
    student = TwoSteps()

    compiled = LabeledFewShot(k=3).compile(student, trainset=trainset)

    assert compiled is not student and student.draft.demos == []
    assert [len(p.demos) for p in compiled.predictors()] == [3, 3]
    assert all(demo in trainset for p in compiled.predictors() for demo in p.demos)
    # One seeded generator for all predictors: reproducible, and each draws its own sample.
    again = LabeledFewShot(k=3).compile(student, trainset=trainset)
    assert [p.demos for p in again.predictors()] == [p.demos for p in compiled.predictors()]
    assert compiled.draft.demos != compiled.check.demos
    assert (
        LabeledFewShot(k=2).compile(student, trainset=trainset, sample=False).draft.demos
        == (trainset[:2])
    )
    assert LabeledFewShot(k=3).compile(student, trainset=[]).draft.demos == []


def test_labeled_demos_alone_lift_the_score_on_unseen_questions(world: FakeLMServer) -> None:
    student = ChainOfThought("question -> answer")
    compiled = LabeledFewShot(k=2).compile(student, trainset=examples(TRAIN))

    assert score_on(student, HELD_OUT) == 0.0
    assert score_on(compiled, HELD_OUT) == 100.0


def test_unknown_compile_options_are_refused() -> None:
    with pytest.raises(TypeError, match="unexpected keyword arguments: 'smaple'"):
        LabeledFewShot().compile(Predict("q -> a"), trainset=[], smaple=False)


# --- BootstrapFewShot -------------------------------------------------------------------


def test_bootstrap_builds_augmented_demos_with_reasoning_then_fills_with_labels(
    world: FakeLMServer,
) -> None:
    student = ChainOfThought("question -> answer")
    optimizer = BootstrapFewShot(
        metric=answer_exact_match, max_bootstrapped_demos=2, max_labeled_demos=4
    )

    compiled = optimizer.compile(student, trainset=examples(TRAIN))

    assert compiled._compiled and not student._compiled
    assert compiled is not student and predictor_of(student).demos == []
    demos = predictor_of(compiled).demos
    assert len(demos) == 4
    # Bootstrapped first: every field the teacher produced, reasoning included.
    assert [dict(d.items()) for d in demos[:2]] == [
        {
            "augmented": True,
            "question": question(c),
            "reasoning": reasoning(c),
            "answer": CAPITALS[c],
        }
        for c in ["France", "Japan"]
    ]
    # Then labelled examples that did not give a trace, as they are.
    assert all(d in examples(TRAIN[2:]) for d in raw(predictor_of(compiled)))
    assert len(raw(predictor_of(compiled))) == 2
    # The teacher stopped once it had two traces.
    assert len(world.requests) == 2
    assert score_on(student, HELD_OUT) == 0.0
    assert score_on(compiled, HELD_OUT) == 100.0


def test_bootstrapping_in_threads_gives_the_same_demos_in_trainset_order(
    fake_lm: FakeLMServer, lm: LM
) -> None:
    # Only Italy, Kenya and Peru are answered right: one by one, the teacher walks
    # France, Japan, Italy, Spain, Kenya; in windows of 4 it also runs Peru (one more).
    for country in ["Italy", "Kenya", "Peru"]:
        fake_lm.answer_fields(
            {"reasoning": reasoning(country), "answer": CAPITALS[country]}, match=asked(country)
        )
    fake_lm.answer_fields({"reasoning": "I do not know.", "answer": "unknown"})

    def compile_with(threads: int | None) -> tuple[list[Any], int]:
        fake_lm.clear_requests()
        optimizer = BootstrapFewShot(
            metric=answer_exact_match,
            max_bootstrapped_demos=2,
            max_labeled_demos=3,
            num_threads=threads,
        )
        with context(lm=lm):
            compiled = optimizer.compile(
                ChainOfThought("question -> answer"), trainset=examples(TRAIN)
            )
        return [dict(d.items()) for d in predictor_of(compiled).demos], len(fake_lm.requests)

    one_by_one, calls = compile_with(None)
    threaded, threaded_calls = compile_with(4)

    assert threaded == one_by_one
    assert [d["question"] for d in one_by_one if d.get("augmented")] == [
        question("Italy"),
        question("Kenya"),
    ]
    assert (calls, threaded_calls) == (5, 6)


def test_the_metric_sees_the_trace_and_rejects_wrong_runs(fake_lm: FakeLMServer, lm: LM) -> None:
    # The teacher gets Italy wrong even with demos.
    fake_lm.answer_fields({"reasoning": "It is Milan.", "answer": "Milan"}, match=asked("Italy"))
    script_capitals(fake_lm)
    traces: list[list[Any]] = []

    def exact_and_record(example: Example, prediction: Prediction, trace: Any = None) -> bool:
        traces.append(trace)
        return answer_exact_match(example, prediction)

    student = ChainOfThought("question -> answer")
    optimizer = BootstrapFewShot(
        metric=exact_and_record, max_bootstrapped_demos=2, max_labeled_demos=3
    )
    with context(lm=lm):
        compiled = optimizer.compile(
            student, trainset=examples(["Italy", "France", "Japan", "Peru"])
        )

    assert [d.question for d in augmented(predictor_of(compiled))] == [
        question("France"),
        question("Japan"),
    ]
    # One labelled demo fills the third slot, from the examples that gave no trace.
    (labelled,) = raw(predictor_of(compiled))
    assert labelled in examples(["Italy", "Peru"])
    assert len(traces) == 3
    for trace in traces:
        (predictor, inputs, prediction), *more = trace
        assert not more
        assert predictor is predictor_of(optimizer.teacher) and predictor is not predictor_of(
            compiled
        )
        assert set(inputs) == {"question"} and "reasoning" in prediction


def test_a_numeric_metric_must_reach_the_threshold(world: FakeLMServer) -> None:
    def half(example: Example, prediction: Prediction, trace: Any = None) -> float:
        return 0.5

    student = ChainOfThought("question -> answer")
    trainset = examples(TRAIN[:2])

    strict = BootstrapFewShot(metric=half, metric_threshold=0.6, max_labeled_demos=1)
    assert augmented(predictor_of(strict.compile(student, trainset=trainset))) == []
    lenient = BootstrapFewShot(metric=half, metric_threshold=0.5, max_labeled_demos=1)
    assert len(augmented(predictor_of(lenient.compile(student, trainset=trainset)))) == 2


def test_a_later_round_samples_afresh_at_temperature_one(fake_lm: FakeLMServer, lm: LM) -> None:
    fake_lm.add_rule(
        asked("France"), answers=[chat("It is Lyon.", "Lyon"), chat(reasoning("France"), "Paris")]
    )
    student = ChainOfThought("question -> answer")
    trainset = examples(["France"])

    with context(lm=lm):
        two_rounds = BootstrapFewShot(metric=answer_exact_match, max_rounds=2).compile(
            student, trainset=trainset
        )
        one_round = BootstrapFewShot(metric=answer_exact_match, max_rounds=1).compile(
            student, trainset=trainset
        )

    assert augmented(predictor_of(one_round)) == []
    assert [d.answer for d in augmented(predictor_of(two_rounds))] == ["Paris"]
    bodies = [entry["body"] for entry in fake_lm.requests]
    assert len(bodies) == 3  # two rounds (Lyon, then Paris), then one round (Lyon)
    assert "temperature" not in bodies[0] and bodies[1]["temperature"] == 1.0
    assert all("rollout_id" not in body for body in bodies)


def test_failing_examples_count_towards_max_errors(fake_lm: FakeLMServer, lm: LM) -> None:
    script_capitals(fake_lm)
    student = ChainOfThought("question -> answer")
    trainset = examples(TRAIN[:4])

    fake_lm.fail_next(count=2, status=500)
    with context(lm=lm):
        compiled = BootstrapFewShot(metric=answer_exact_match, max_errors=3).compile(
            student, trainset=trainset
        )
    assert [d.question for d in augmented(predictor_of(compiled))] == [
        question(c) for c in TRAIN[2:4]
    ]

    fake_lm.fail_next(count=2, status=500)
    with context(lm=lm), pytest.raises(ProviderError):
        BootstrapFewShot(metric=answer_exact_match, max_errors=2).compile(
            student, trainset=trainset
        )

    fake_lm.fail_next(count=1, status=500)
    with context(lm=lm, max_errors=1), pytest.raises(ProviderError):
        BootstrapFewShot(metric=answer_exact_match).compile(student, trainset=trainset)


def test_demo_counts_and_rounds_default_to_the_settings(
    world: FakeLMServer, bootstrap_env: Callable[..., None]
) -> None:
    assert BootstrapFewShot().get_params()["max_bootstrapped_demos"] == 4

    bootstrap_env(max_bootstrapped_demos=1, max_labeled_demos=2, max_rounds=3)
    optimizer = BootstrapFewShot(metric=answer_exact_match)
    params = optimizer.get_params()
    assert (params["max_bootstrapped_demos"], params["max_labeled_demos"]) == (1, 2)
    assert params["max_rounds"] == 3
    assert BootstrapFewShot(max_labeled_demos=5).max_labeled_demos == 5
    search = BootstrapFewShotWithRandomSearch(answer_exact_match)
    assert (search.max_num_samples, search.max_labeled_demos) == (1, 2)

    compiled = optimizer.compile(ChainOfThought("question -> answer"), trainset=examples(TRAIN))
    assert len(augmented(predictor_of(compiled))) == 1
    assert len(predictor_of(compiled).demos) == 2


def test_the_teacher_must_have_the_students_shape() -> None:
    student = ChainOfThought("question -> answer")
    with pytest.raises(InputError, match="same signatures"):
        BootstrapFewShot(max_labeled_demos=0).compile(
            student,
            teacher=ChainOfThought("question -> answer, confidence"),
            trainset=examples(TRAIN),
        )
    compiled_student = Predict("question -> answer")
    compiled_student._compiled = True
    with pytest.raises(InputError, match="already compiled"):
        BootstrapFewShot().compile(compiled_student, trainset=examples(TRAIN))


def test_one_example_bootstraps_to_a_json_outcome(world: FakeLMServer) -> None:
    teacher = LabeledFewShot(k=3).compile(
        ChainOfThought("question -> answer"), trainset=examples(TRAIN[:3])
    )
    demos_before = list(predictor_of(teacher).demos)

    outcome = bootstrap_example(teacher, examples(["France"])[0], metric=answer_exact_match)

    # France was among the teacher's demos, but not in the prompt it answered.
    assert examples(["France"])[0] in demos_before
    prompt = json.dumps(world.requests[-1]["body"]["messages"])
    assert prompt.count(question("France")) == 1
    assert predictor_of(teacher).demos == demos_before  # and is back afterwards
    payload = json.loads(json.dumps(outcome.model_dump(mode="json")))
    assert BootstrapOutcome.model_validate(payload) == outcome
    assert payload == {
        "success": True,
        "demos": {
            "predict": [
                {
                    "augmented": True,
                    "question": question("France"),
                    "reasoning": reasoning("France"),
                    "answer": "Paris",
                }
            ]
        },
        "error": None,
    }
    failed = bootstrap_example(teacher, examples(["France"])[0], metric=lambda e, p, t: 1 / 0)
    assert not failed.success and failed.error == "ZeroDivisionError: division by zero"
    assert isinstance(failed.exception, ZeroDivisionError)


# --- BootstrapFewShotWithRandomSearch -----------------------------------------------------


def test_random_search_keeps_the_best_candidate_and_beats_the_baseline(
    fake_lm: FakeLMServer, lm: LM
) -> None:
    # Two demos are needed here, so candidates bootstrapping only one score 0.
    script_capitals(fake_lm, needs=2)
    student = ChainOfThought("question -> answer")
    teacher = LabeledFewShot(k=4).compile(student, trainset=examples(TRAIN))
    search = BootstrapFewShotWithRandomSearch(
        metric=answer_exact_match,
        max_bootstrapped_demos=2,
        max_labeled_demos=0,
        num_candidate_programs=3,
    )

    with context(lm=lm):
        best = search.compile(
            student, teacher=teacher, trainset=examples(TRAIN), valset=examples(VAL)
        )
        baseline, compiled = score_on(student, HELD_OUT), score_on(best, HELD_OUT)

    candidates: list[CandidateProgram] = best.candidate_programs
    by_seed = {c["seed"]: c["score"] for c in candidates}
    # zero-shot, labels only (k=0), unshuffled, then random sizes 2, 1, 1 for seeds 0..2
    assert by_seed == {-3: 0.0, -2: 0.0, -1: 100.0, 0: 100.0, 1: 0.0, 2: 0.0}
    assert [c.seed for c in candidates] == [-1, 0, -3, -2, 1, 2]
    assert candidates[0].program is best and best._compiled
    assert [len(predictor_of(c.program).demos) for c in candidates] == [2, 2, 0, 0, 1, 1]
    assert (baseline, compiled) == (0.0, 100.0)
    # Candidates hang off the program without becoming part of it.
    assert [name for name, _ in best.named_predictors()] == ["predict"]


def test_random_search_stops_at_the_target_score_and_saves_like_any_program(
    world: FakeLMServer, tmp_path: Path
) -> None:
    search = BootstrapFewShotWithRandomSearch(
        metric=answer_exact_match,
        max_bootstrapped_demos=2,
        max_labeled_demos=2,
        num_candidate_programs=8,
        stop_at_score=100.0,
    )
    best = search.compile(
        ChainOfThought("question -> answer"), trainset=examples(TRAIN), valset=examples(VAL)
    )

    seeds = [c.seed for c in best.candidate_programs]
    assert seeds == [-2, -3]  # labels alone already reach 100
    assert (
        predictor_of(best).demos
        == predictor_of(LabeledFewShot(k=2).compile(best, trainset=examples(TRAIN))).demos
    )

    path = tmp_path / "program.json"
    best.save(path)
    loaded = ChainOfThought("question -> answer")
    loaded.load(path)
    assert [dict(d.items()) for d in predictor_of(loaded).demos] == [
        dict(d.items()) for d in predictor_of(best).demos
    ]
    assert score_on(loaded, HELD_OUT) == 100.0


def test_a_saved_bootstrapped_program_keeps_its_augmented_demos(
    world: FakeLMServer, tmp_path: Path
) -> None:
    compiled = BootstrapFewShot(
        metric=answer_exact_match, max_bootstrapped_demos=2, max_labeled_demos=3
    ).compile(ChainOfThought("question -> answer"), trainset=examples(TRAIN))
    path = tmp_path / "program.json"
    compiled.save(path)

    loaded = ChainOfThought("question -> answer")
    loaded.load(path)

    assert [dict(d.items()) for d in predictor_of(loaded).demos] == [
        dict(d.items()) for d in predictor_of(compiled).demos
    ]
    assert [d.reasoning for d in augmented(predictor_of(loaded))] == [
        reasoning("France"),
        reasoning("Japan"),
    ]
    assert score_on(loaded, HELD_OUT) == 100.0


def test_a_candidate_is_scored_to_a_json_result(world: FakeLMServer) -> None:
    program = LabeledFewShot(k=2).compile(
        ChainOfThought("question -> answer"), trainset=examples(TRAIN)
    )
    scored = evaluate_candidate(program, examples(VAL), metric=answer_exact_match)
    assert json.loads(scored.model_dump_json()) == {
        "score": 100.0,
        "subscores": [True, True, True],
    }
