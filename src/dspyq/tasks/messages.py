"""What crosses the queue: JSON messages validated on both ends. Never an API key."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dspyq.adapters import serialize_for_json
from dspyq.core.example import Prediction
from dspyq.lm.lm import split_model

SECRET_KEYS = frozenset({"api_key", "api_base", "authorization", "x-api-key"})


class ExecutionRequest(BaseModel):
    """One module execution: the program as JSON, its inputs and the LM to run it on."""

    model_config = ConfigDict(extra="forbid")

    program: dict[str, Any]
    inputs: dict[str, Any]
    lm: str
    lm_kwargs: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str
    parent_id: str | None = None
    fallbacks: list[str] = Field(default_factory=list)
    method: str = "forward"
    step: str | None = None
    # Publish the LM's text to a Redis stream as it arrives (dspyq.tasks.streaming).
    stream: bool = False
    # The submitter's dspyq.configure(max_parse_retries=N); None: the worker's setting.
    max_parse_retries: int | None = Field(default=None, ge=0)

    @field_validator("lm_kwargs")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Workers hold the keys; a message that carries one is refused on both ends.
        leaked = SECRET_KEYS.intersection(k.lower() for k in value)
        if leaked:
            raise ValueError(
                f"{sorted(leaked)} must not travel in a job; workers read them from settings"
            )
        return value

    @field_validator("lm", "fallbacks")
    @classmethod
    def _known_shape(cls, value: Any) -> Any:
        for model in [value] if isinstance(value, str) else value:
            split_model(model)
        return value

    @property
    def provider(self) -> str:
        return split_model(self.lm)[0]


class ExecutionResult(BaseModel):
    """What a finished execution returns through the result backend."""

    outputs: dict[str, Any]
    correlation_id: str
    lm: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    lm_calls: int = 0
    duration_ms: float = 0.0
    stale: bool = False
    """Some LM answer came from an expired cache entry: every provider was unavailable."""

    def prediction(self) -> Prediction:
        return Prediction(**self.outputs)


def outputs_as_json(prediction: Any) -> dict[str, Any]:
    """A module's result (a Prediction, a dict or a plain value) as a JSON-safe dict."""
    if isinstance(prediction, Prediction):
        values = dict(prediction.items())
    elif isinstance(prediction, dict):
        values = dict(prediction)
    else:
        values = {"result": prediction}
    return {key: serialize_for_json(value) for key, value in values.items()}
