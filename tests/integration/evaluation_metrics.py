"""Metrics defined outside dspyq, imported by worker processes by path (their PYTHONPATH
includes this directory), as a user's own metrics would be."""

from __future__ import annotations

from typing import Any


def answer_has_digit(example: Any, prediction: Any, trace: Any = None) -> float:
    """Half a point for any digit in the answer, a whole one for the expected answer."""
    answer = str(prediction.answer)
    if answer == example.answer:
        return 1.0
    return 0.5 if any(ch.isdigit() for ch in answer) else 0.0


def feedback_exact_match(
    gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
) -> float:
    """GEPA's five-argument metric: 1 for the expected answer, else 0."""
    return float(str(pred.answer) == gold.answer)
