"""``majority``: the most common answer among a prediction's completions, as DSPy's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dspyq.core.example import Completions, Prediction
from dspyq.optimize.metrics import normalize_text

__all__ = ["default_normalize", "majority"]


def default_normalize(text: str) -> str | None:
    """SQuAD normalization; an answer that normalizes to nothing does not vote."""
    return normalize_text(text) or None


def majority(
    prediction_or_completions: Prediction | Completions | list[Any],
    normalize: Callable[[Any], Any] | None = default_normalize,
    field: str | None = None,
) -> Prediction:
    """The first completion whose ``field`` (default: the last output field) has the
    most common normalized value; ties go to the earlier value."""
    if not isinstance(prediction_or_completions, Prediction | Completions | list):
        raise AssertionError  # DSPy asserts the argument's type
    if isinstance(prediction_or_completions, Prediction):
        completions: Any = prediction_or_completions.completions
    else:
        completions = prediction_or_completions
    signature = getattr(completions, "signature", None)
    if not field:
        if signature is not None:
            field = list(signature.output_fields)[-1]
        else:
            field = list(completions[0].keys())[-1]
    norm = normalize if normalize else (lambda value: value)
    values = [norm(completions[i][field]) for i in range(len(completions))]
    voting = [value for value in values if value is not None] or values
    counts: dict[Any, int] = {}
    for value in voting:
        counts[value] = counts.get(value, 0) + 1
    winner = max(counts, key=lambda value: counts[value])
    chosen = next(
        completions[i] for i in range(len(completions)) if norm(completions[i][field]) == winner
    )
    return Prediction.from_completions([dict(chosen)], signature=signature)
