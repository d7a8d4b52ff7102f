"""A predictor called more than once per forward keeps the same bootstrapped demo as in
DSPy 3.4.1, which keeps one of the calls picked with a seed hashed from them."""

from __future__ import annotations

import random
from typing import Any

import dspy
import pytest
from dspy.utils.hasher import Hasher

import dspyq
from dspyq.optimize.demo_seed import demo_seed

pytestmark = pytest.mark.usefixtures("fresh_configurations")


def hops(pkg: Any, count: int) -> Any:
    """One shared ``hop`` predictor called ``count`` times, each reading the last answer,
    and a ``final`` predictor called once."""

    class Hops(pkg.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.hop = pkg.Predict("question -> answer")
            self.final = pkg.Predict("question, notes -> answer")

        def forward(self, question: str) -> Any:
            notes = question
            for _ in range(count):
                notes = f"{notes} {self.hop(question=notes).answer}"
            return self.final(question=question, notes=notes)

    return Hops()


def compiled_demos(pkg: Any, count: int, size: int, failing: frozenset[int]) -> Any:
    trainset = [
        pkg.Example(question=f"q{i}", answer=f"final{i}").with_inputs("question")
        for i in range(size)
    ]
    answers = []
    for i in range(size):
        answers += [{"answer": f"hop{i}.{n}"} for n in range(count)]
        answers.append({"answer": "wrong" if i in failing else f"final{i}"})

    def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
        return bool(example.answer == prediction.answer)

    optimizer = pkg.BootstrapFewShot(metric=metric, max_bootstrapped_demos=8, max_labeled_demos=8)
    with pkg.context(lm=pkg.utils.DummyLM(answers)):
        compiled = optimizer.compile(hops(pkg, count), trainset=trainset)
    return {
        name: [dict(demo.items(include_dspy=True)) for demo in predictor.demos]
        for name, predictor in compiled.named_predictors()
    }


@pytest.mark.parametrize(
    ("count", "size", "failing"),
    [(2, 3, frozenset()), (2, 6, frozenset({1})), (3, 5, frozenset()), (4, 4, frozenset({0, 2}))],
)
def test_a_shared_predictor_keeps_dspys_demos(
    count: int, size: int, failing: frozenset[int]
) -> None:
    theirs = compiled_demos(dspy, count, size, failing)
    ours = compiled_demos(dspyq, count, size, failing)
    assert ours == theirs
    kept = [demo["question"] for demo in ours["hop"] if demo.get("augmented")]
    assert len(kept) == size - len(failing)


def test_the_cases_above_take_both_branches_of_the_choice() -> None:
    """Otherwise the comparison would not show that the seed is DSPy's."""
    picks = set()
    for count, size in ((2, 3), (2, 6), (3, 5), (4, 4)):
        for i in range(size):
            notes, demos = f"q{i}", []
            for n in range(count):
                demos.append({"augmented": True, "question": notes, "answer": f"hop{i}.{n}"})
                notes = f"{notes} hop{i}.{n}"
            rng = random.Random(demo_seed(demos))
            picks.add(rng.random() < 0.5)
    assert picks == {True, False}


@pytest.mark.parametrize(
    "demos",
    [
        [{"augmented": True, "question": "q", "answer": "a"}] * 3,
        [{"augmented": True, "n": 1, "x": 2.5, "items": [1, "b", None], "map": {"k": (1, 2)}}],
        [{"augmented": True, "text": "é" * 300}, {"augmented": True, "text": "x" * 70_000}],
    ],
)
def test_the_seed_is_dspys_hash_of_the_demos(demos: list[dict[str, Any]]) -> None:
    assert demo_seed(demos) == Hasher.hash(tuple(dspy.Example(**demo) for demo in demos))
