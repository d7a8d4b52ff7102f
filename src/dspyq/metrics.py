"""Public home of dspyq's built-in metrics (``dspyq.metrics.answer_exact_match`` ...).

The code lives in :mod:`dspyq.optimize.metrics`; this module re-exports it so user
code and import paths sent across the queue read like DSPy's.
"""

from dspyq.optimize.metrics import (
    answer_exact_match,
    answer_passage_match,
    exact_match,
    f1_score,
    normalize_text,
    passage_has_answers,
)

__all__ = [
    "answer_exact_match",
    "answer_passage_match",
    "exact_match",
    "f1_score",
    "normalize_text",
    "passage_has_answers",
]
