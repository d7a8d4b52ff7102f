"""``dspyq.evaluate``: DSPy's ``dspy.evaluate`` names, so ``from dspy.evaluate import ...``
ports by changing the package name. The code lives in :mod:`dspyq.optimize`."""

from dspyq.optimize.auto_evaluation import CompleteAndGrounded, SemanticF1
from dspyq.optimize.evaluate import Evaluate, EvaluationResult
from dspyq.optimize.metrics import EM, answer_exact_match, answer_passage_match, normalize_text

__all__ = [
    "EM",
    "CompleteAndGrounded",
    "Evaluate",
    "EvaluationResult",
    "SemanticF1",
    "answer_exact_match",
    "answer_passage_match",
    "normalize_text",
]
