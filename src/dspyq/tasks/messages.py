"""A module's result as JSON; the messages themselves live in :mod:`dspyq.tasks.protocol`."""

from __future__ import annotations

from typing import Any

from dspyq.adapters import serialize_for_json
from dspyq.core.example import Prediction
from dspyq.tasks.protocol import SECRET_KEYS, ExecutionRequest, ExecutionResult

__all__ = ["SECRET_KEYS", "ExecutionRequest", "ExecutionResult", "outputs_as_json"]


def outputs_as_json(prediction: Any) -> dict[str, Any]:
    """A module's result (a Prediction, a dict or a plain value) as a JSON-safe dict."""
    if isinstance(prediction, Prediction):
        values = dict(prediction.items())
    elif isinstance(prediction, dict):
        values = dict(prediction)
    else:
        values = {"result": prediction}
    return {key: serialize_for_json(value) for key, value in values.items()}
