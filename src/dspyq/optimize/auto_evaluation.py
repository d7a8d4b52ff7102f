"""LM-judged metrics, as DSPy's ``dspy.evaluate.SemanticF1`` and ``CompleteAndGrounded``.

Each is a module whose judge is a ``ChainOfThought`` over the same signatures DSPy
uses (same instructions and field descriptions, hence the same prompts), so they
can be optimized and saved like any program. Called as a metric
``(example, pred, trace=None)``, they return ``Prediction(score=...)``: the F1 of the
judged precision and recall, or whether it reaches ``threshold`` when tracing.
"""

from __future__ import annotations

from typing import Any

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.example import Prediction
from dspyq.core.module import Module
from dspyq.core.signature import InputField, OutputField, Signature

__all__ = ["CompleteAndGrounded", "SemanticF1"]

_RECALL = "fraction (out of 1.0) of ground truth covered by the system response"
_PRECISION = "fraction (out of 1.0) of system response covered by the ground truth"
_GT_IDEAS = "enumeration of key ideas in the ground truth"
_SR_IDEAS = "enumeration of key ideas in the system response"
_DISCUSSION = "discussion of the overlap between ground truth and system response"


class SemanticRecallPrecision(Signature):
    """
    Compare a system's response to the ground truth to compute its recall and precision.
    If asked to reason, enumerate key ideas in each response, and whether they are present in the other response.
    """

    question: str = InputField()
    ground_truth: str = InputField()
    system_response: str = InputField()
    recall: float = OutputField(desc=_RECALL)
    precision: float = OutputField(desc=_PRECISION)


class _KeyIdeasComparison(Signature):
    """The fields shared by the key-idea comparisons below, in their prompt order."""

    question: str = InputField()
    ground_truth: str = InputField()
    system_response: str = InputField()
    ground_truth_key_ideas: str = OutputField(desc=_GT_IDEAS)
    system_response_key_ideas: str = OutputField(desc=_SR_IDEAS)
    discussion: str = OutputField(desc=_DISCUSSION)


class DecompositionalSemanticRecallPrecision(_KeyIdeasComparison):
    """
    Compare a system's response to the ground truth to compute recall and precision of key ideas.
    You will first enumerate key ideas in each response, discuss their overlap, and then report recall and precision.
    """

    recall: float = OutputField(desc=_RECALL)
    precision: float = OutputField(desc=_PRECISION)


class AnswerCompleteness(_KeyIdeasComparison):
    """
    Estimate the completeness of a system's responses, against the ground truth.
    You will first enumerate key ideas in each response, discuss their overlap, and then report completeness.
    """

    completeness: float = OutputField(desc=_RECALL)


class AnswerGroundedness(Signature):
    """
    Estimate the groundedness of a system's responses, against real retrieved documents written by people.
    You will first enumerate whatever non-trivial or check-worthy claims are made in the system response, and then
    discuss the extent to which some or all of them can be deduced from the retrieved context and basic commonsense.
    """

    question: str = InputField()
    retrieved_context: str = InputField()
    system_response: str = InputField()
    system_response_claims: str = OutputField(
        desc="enumeration of non-trivial or check-worthy claims in the system response"
    )
    discussion: str = OutputField(
        desc="discussion of how supported the claims are by the retrieved context"
    )
    groundedness: float = OutputField(
        desc="fraction (out of 1.0) of system response supported by the retrieved context"
    )


def f1_score(precision: float, recall: float) -> float:
    """F1 of precision and recall, each clamped to [0, 1]."""
    precision, recall = max(0.0, min(1.0, precision)), max(0.0, min(1.0, recall))
    return 0.0 if precision + recall == 0 else 2 * (precision * recall) / (precision + recall)


class SemanticF1(Module):
    """Semantic F1 of ``pred.response`` against ``example.response``, judged by the LM."""

    def __init__(self, threshold: float = 0.66, decompositional: bool = False) -> None:
        super().__init__()
        self.threshold = threshold
        judged = (
            DecompositionalSemanticRecallPrecision if decompositional else SemanticRecallPrecision
        )
        self.module = ChainOfThought(judged)

    def forward(self, example: Any, pred: Any, trace: Any = None) -> Prediction:
        scores = self.module(
            question=example.question, ground_truth=example.response, system_response=pred.response
        )
        score = f1_score(scores.precision, scores.recall)
        return Prediction(score=score if trace is None else score >= self.threshold)


class CompleteAndGrounded(Module):
    """F1 of the judged completeness (against ``example.response``) and groundedness
    (in ``pred.context``) of ``pred.response``."""

    def __init__(self, threshold: float = 0.66) -> None:
        super().__init__()
        self.threshold = threshold
        self.completeness_module = ChainOfThought(AnswerCompleteness)
        self.groundedness_module = ChainOfThought(AnswerGroundedness)

    def forward(self, example: Any, pred: Any, trace: Any = None) -> Prediction:
        completeness = self.completeness_module(
            question=example.question, ground_truth=example.response, system_response=pred.response
        )
        groundedness = self.groundedness_module(
            question=example.question, retrieved_context=pred.context, system_response=pred.response
        )
        score = f1_score(groundedness.groundedness, completeness.completeness)
        return Prediction(score=score if trace is None else score >= self.threshold)
