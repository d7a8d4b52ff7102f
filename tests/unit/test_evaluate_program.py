"""Evaluate on a real program: Predict over dspyq's LM, answered by the fake LM server.

The server is scripted per question, some answers right and some wrong, so the score
is known in advance; the LM is set with ``context(lm=...)`` in the test's thread only,
so every worker thread must inherit it for the run to work at all.
"""

from __future__ import annotations

import pytest

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.predict import Predict
from dspyq.errors import AdapterParseError, DspyqError
from dspyq.lm.lm import LM
from dspyq.metrics import answer_exact_match
from dspyq.optimize.evaluate import Evaluate
from dspyq.testing import FakeLMServer

CAPITALS = {
    "France": ("Paris", "Paris"),
    "Japan": ("Tokyo", "Tokyo"),
    "Italy": ("Rome", "Milan"),
    "Spain": ("Madrid", "Madrid"),
    "Canada": ("Ottawa", "Toronto"),
    "Kenya": ("Nairobi", "Nairobi"),
    "Peru": ("Lima", "Lima"),
    "Chile": ("Santiago", "Santiago"),
}
"""country -> (gold answer, what the fake LM will say): 6 right, 2 wrong."""


def capital_question(country: str) -> str:
    return f"What is the capital of {country}?"


@pytest.fixture
def devset() -> list[Example]:
    return [
        Example(question=capital_question(country), answer=gold).with_inputs("question")
        for country, (gold, _) in CAPITALS.items()
    ]


@pytest.fixture
def lm(fake_lm: FakeLMServer) -> LM:
    for country, (_, said) in CAPITALS.items():
        fake_lm.answer_fields({"answer": said}, match=rf"capital of {country}\?")
    return LM("openai/fake-model", api_base=fake_lm.openai_base, api_key="test", cache=False)


def test_score_of_predict_over_the_lm_is_the_share_of_right_answers(
    fake_lm: FakeLMServer, lm: LM, devset: list[Example]
) -> None:
    with context(lm=lm):
        result = Evaluate(devset=devset, metric=answer_exact_match)(Predict("question -> answer"))

    assert result.score == 75.0
    wrong = [example.question for example, _, score in result.results if not score]
    assert wrong == [capital_question("Italy"), capital_question("Canada")]
    assert len(fake_lm.requests) == len(devset)


def test_threads_keep_devset_order_and_pair_each_example_with_its_own_prediction(
    fake_lm: FakeLMServer, lm: LM, devset: list[Example]
) -> None:
    # Random per-request latency makes the threads finish in a shuffled order.
    fake_lm.configure(latency=0.01, latency_jitter=0.1, seed=7)

    with context(lm=lm):
        result = Evaluate(devset=devset, metric=answer_exact_match, num_threads=4)(
            Predict("question -> answer")
        )

    assert result.score == 75.0
    assert [example for example, _, _ in result.results] == devset
    said = [said for _, said in CAPITALS.values()]
    assert [prediction.answer for _, prediction, _ in result.results] == said


def test_an_unparseable_completion_counts_as_an_error_and_scores_failure_score(
    fake_lm: FakeLMServer, lm: LM, devset: list[Example]
) -> None:
    # Rules are tried in order, so this one must come before the scripted answers.
    fake_lm.reset()
    fake_lm.answer("I would rather not say.", match=r"capital of (Japan|Spain)\?")
    for country, (_, said) in CAPITALS.items():
        fake_lm.answer_fields({"answer": said}, match=rf"capital of {country}\?")

    with context(lm=lm):
        result = Evaluate(devset=devset, metric=answer_exact_match, num_threads=3, max_errors=3)(
            Predict("question -> answer")
        )

    # Paris, Nairobi, Lima, Santiago right; Japan and Spain failed; Italy, Canada wrong.
    assert result.score == 50.0
    failed = [example.question for example, prediction, _ in result.results if not prediction]
    assert failed == [capital_question("Japan"), capital_question("Spain")]


def test_errors_beyond_max_errors_raise_with_the_programs_error_as_cause(
    fake_lm: FakeLMServer, lm: LM, devset: list[Example]
) -> None:
    fake_lm.reset()
    fake_lm.answer("I would rather not say.", match=r"capital of (Japan|Spain)\?")
    fake_lm.answer_fields({"answer": "Paris"})

    with context(lm=lm), pytest.raises(DspyqError, match="max_errors=1") as raised:
        Evaluate(devset=devset, metric=answer_exact_match, num_threads=2, max_errors=1)(
            Predict("question -> answer")
        )

    assert isinstance(raised.value.__cause__, AdapterParseError)
