"""Ensemble against DSPy 3.4.1: the same programs sampled, the same reduced prediction."""

from __future__ import annotations

import random
from typing import Any

import dspy
import pytest

import dspyq


class Constant:
    """A program answering its own label (the same on both sides)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __call__(self, **kwargs: Any) -> dict[str, str]:
        return {"answer": f"{self.label}:{kwargs['question']}"}


def test_ensemble_samples_and_reduces_like_dspy():
    programs = [Constant(c) for c in "abcde"]

    def reduce_fn(outputs: list[dict[str, str]]) -> list[str]:
        return [output["answer"] for output in outputs]

    random.seed(3)
    ours = [
        dspyq.Ensemble(reduce_fn=reduce_fn, size=2).compile(programs)(question="q")
        for _ in range(5)
    ]
    random.seed(3)
    theirs = [
        dspy.Ensemble(reduce_fn=reduce_fn, size=2).compile(programs)(question="q") for _ in range(5)
    ]
    assert ours == theirs
    unreduced = dspyq.Ensemble().compile(programs[:2])(question="x")
    assert unreduced == dspy.Ensemble().compile(programs[:2])(question="x")
    with pytest.raises(AssertionError):
        dspyq.Ensemble(deterministic=True)
    with pytest.raises(AssertionError):
        dspy.Ensemble(deterministic=True)
