"""The data that crosses the provider boundary: one request in, one response (or chunks) out.

These are pydantic models so that a request can be hashed for the cache, logged, and
sent across a process boundary in its JSON form.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Usage(BaseModel):
    """Token counts of one call, as the provider reported them (zeros when it did not)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        """Usage with ``total_tokens`` filled in."""
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class LMRequest(BaseModel):
    """One chat completion request, independent of the provider's wire protocol.

    ``model`` is the provider-side name (``gpt-4o-mini``, not ``openai/gpt-4o-mini``);
    ``params`` holds sampling options (temperature, max_tokens, n, stop, ...) that the
    provider translates to its own names; ``response_format`` is already in OpenAI's
    dict form (the LM converts pydantic classes before building the request).
    """

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = Field(default_factory=dict)
    response_format: dict[str, Any] | None = None
    timeout: float | None = None

    @property
    def n(self) -> int:
        return int(self.params.get("n") or 1)


class LMResponse(BaseModel):
    """What a provider answered: one text per choice, the usage, and the model it used."""

    outputs: list[str]
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    finish_reasons: list[str | None] = Field(default_factory=list)
    # Per choice, the tool calls the model made, in OpenAI's shape (empty: none at all).
    tool_calls: list[list[dict[str, Any]] | None] = Field(default_factory=list)
    # The answer's request id and rate-limit budget, as its headers said; not part of
    # the cached form (a cached answer says nothing about today's budget).
    rate_limit: dict[str, Any] | None = Field(default=None, exclude=True)


def choice_outputs(response: LMResponse) -> list[Any]:
    """What an LM call returns per choice: the text, or ``{"text", "tool_calls"}`` with calls."""
    if not any(response.tool_calls):
        return list(response.outputs)
    calls = response.tool_calls + [None] * (len(response.outputs) - len(response.tool_calls))
    return [
        {"text": text, "tool_calls": made} if made else text
        for text, made in zip(response.outputs, calls, strict=False)
    ]


class LMChunk(BaseModel):
    """One piece of a streamed answer: a text delta, and/or the final usage or finish reason."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
