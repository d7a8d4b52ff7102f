"""BootstrapFewShot gives every predictor of a multi-predictor program DSPy's demos.

The same custom module (two or three predictors, Predict and ChainOfThought, one of
them nested), trainset, metric and scripted ``DummyLM`` run through DSPy 3.4.1's
``BootstrapFewShot`` and dspyq's; each predictor's demos, as dicts and in order, must
be equal. The labelled demos of the second and later predictors are where the two
once parted: DSPy draws each predictor's sample from the whole pool of untraced
examples with one shared ``random.Random(0)``.
"""

from __future__ import annotations

from typing import Any

import dspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dspyq

pytestmark = pytest.mark.usefixtures("fresh_configurations")


def two_step(pkg: Any) -> Any:
    """A draft (ChainOfThought) then an answer (Predict) reading it."""

    class TwoStep(pkg.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.draft = pkg.ChainOfThought("question -> draft")
            self.final = pkg.Predict("question, draft -> answer")

        def forward(self, question: str) -> Any:
            draft = self.draft(question=question).draft
            return self.final(question=question, draft=draft)

    return TwoStep()


def three_step(pkg: Any) -> Any:
    """A nested two-predictor module between two predictors of the outer one."""

    class Review(pkg.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.critique = pkg.Predict("question, draft -> verdict")
            self.revise = pkg.ChainOfThought("question, verdict -> revised")

        def forward(self, question: str, draft: str) -> Any:
            verdict = self.critique(question=question, draft=draft).verdict
            return self.revise(question=question, verdict=verdict)

    class ThreeStep(pkg.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.draft = pkg.Predict("question -> draft")
            self.review = Review()
            self.final = pkg.Predict("question, revised -> answer")

        def forward(self, question: str) -> Any:
            draft = self.draft(question=question).draft
            revised = self.review(question=question, draft=draft).revised
            return self.final(question=question, revised=revised)

    return ThreeStep()


PROGRAMS = {"two": two_step, "three": three_step}


def question(index: int) -> str:
    # Bracketed so that no question's text holds another's (DummyLM matches substrings).
    return f"<q{index:02d}>"


def script(size: int, right: frozenset[int]) -> dict[str, dict[str, str]]:
    """Every field any predictor asks for, per question; the answer is right for ``right``."""
    return {
        question(i): {
            "reasoning": f"thinking about {i}",
            "draft": f"draft {i}",
            "verdict": f"verdict {i}",
            "revised": f"revised {i}",
            "answer": f"a{i}" if i in right else "wrong",
        }
        for i in range(size)
    }


def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return bool(example.answer == prediction.answer)


def compiled_demos(
    pkg: Any,
    program: str,
    size: int,
    right: frozenset[int],
    options: dict[str, Any],
    with_teacher: bool,
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each predictor's name and demos after ``pkg``'s BootstrapFewShot."""
    trainset = [
        pkg.Example(question=question(i), answer=f"a{i}").with_inputs("question")
        for i in range(size)
    ]
    lm = pkg.utils.DummyLM(script(size, right))
    teacher = PROGRAMS[program](pkg) if with_teacher else None
    with pkg.context(lm=lm):
        optimizer = pkg.BootstrapFewShot(metric=metric, **options)
        compiled = optimizer.compile(PROGRAMS[program](pkg), trainset=trainset, teacher=teacher)
    return [
        (name, [dict(demo.items()) for demo in predictor.demos])
        for name, predictor in compiled.named_predictors()
    ]


def assert_same_demos(
    program: str, size: int, right: frozenset[int], options: dict[str, Any], with_teacher: bool
) -> list[tuple[str, list[dict[str, Any]]]]:
    theirs = compiled_demos(dspy, program, size, right, options, with_teacher)
    ours = compiled_demos(dspyq, program, size, right, options, with_teacher)
    assert ours == theirs
    return ours


@pytest.mark.parametrize("program", list(PROGRAMS))
@pytest.mark.parametrize(
    ("size", "bootstrapped", "labeled"),
    [
        (1, 4, 16),
        (1, 1, 1),
        (2, 4, 16),
        (5, 2, 4),
        (8, 1, 3),
        (10, 4, 16),
        (12, 3, 5),
        (12, 0, 6),
        (6, 3, 0),
    ],
)
def test_every_predictor_gets_dspys_demos(
    program: str, size: int, bootstrapped: int, labeled: int
) -> None:
    right = frozenset(i for i in range(size) if i % 3 != 1)
    options = {"max_bootstrapped_demos": bootstrapped, "max_labeled_demos": labeled}
    assert_same_demos(program, size, right, options, with_teacher=False)


def test_later_predictors_draw_from_the_whole_untraced_pool() -> None:
    """With fewer labelled slots for the first predictor, the later ones still get as
    many as the cap allows: their samples are not cut down to the first one's."""
    demos = assert_same_demos(
        "three",
        10,
        frozenset({0, 1}),
        {"max_bootstrapped_demos": 2, "max_labeled_demos": 4},
        with_teacher=False,
    )
    counts = {name: sum(1 for d in ds if not d.get("augmented")) for name, ds in demos}
    assert counts == {"draft": 2, "review.critique": 2, "review.revise.predict": 2, "final": 2}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    program=st.sampled_from(list(PROGRAMS)),
    size=st.integers(min_value=1, max_value=14),
    right=st.frozensets(st.integers(min_value=0, max_value=13)),
    bootstrapped=st.integers(min_value=0, max_value=5),
    labeled=st.integers(min_value=0, max_value=8),
    rounds=st.integers(min_value=1, max_value=2),
    with_teacher=st.booleans(),
)
def test_generated_settings_give_dspys_demos(
    program: str,
    size: int,
    right: frozenset[int],
    bootstrapped: int,
    labeled: int,
    rounds: int,
    with_teacher: bool,
) -> None:
    options = {
        "max_bootstrapped_demos": bootstrapped,
        "max_labeled_demos": labeled,
        "max_rounds": rounds,
    }
    assert_same_demos(program, size, right, options, with_teacher)
