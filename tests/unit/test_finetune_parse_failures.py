"""A completion neither side can parse, met while BootstrapFinetune bootstraps: what DSPy does."""

from __future__ import annotations

import dspy
import pytest
from finetune_server import SUMS, finetuning, our_lm, their_lm

from dspyq.core.example import Example
from dspyq.core.predict import Predict
from dspyq.metrics import answer_exact_match
from dspyq.optimize.bootstrap_finetune import BootstrapFinetune
from dspyq.testing import FakeLMServer

__all__ = ["finetuning"]  # the fixture, imported for the tests here


def test_an_unparsable_completion_fails_as_in_dspy(finetuning: FakeLMServer) -> None:
    finetuning.reset()
    finetuning.configure(finetune_seconds=0.1)
    finetuning.answer("no fields at all")
    trainset = [Example(question=q, answer=a).with_inputs("question") for q, a in SUMS]
    student = Predict("question -> answer")
    student.set_lm(our_lm(finetuning))
    with pytest.raises(Exception) as ours:
        BootstrapFinetune(metric=answer_exact_match).compile(student, trainset=trainset)
    their_set = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in SUMS]
    their_student = dspy.Predict("question -> answer")
    their_student.set_lm(their_lm(finetuning))
    with pytest.raises(Exception) as theirs:
        dspy.BootstrapFinetune(metric=dspy.evaluate.answer_exact_match).compile(
            their_student, trainset=their_set
        )
    assert type(ours.value).__name__ == type(theirs.value).__name__
    assert str(ours.value) == str(theirs.value)
    assert isinstance(theirs.value, AttributeError)  # the failed call's record cannot be built
