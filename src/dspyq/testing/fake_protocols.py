"""Wire shapes shared by the fake server's protocols: replies, errors, headers and SSE.

Only what a client can observe is imitated: field names, event order, the
``data: [DONE]`` terminator, usage placement, error body layout and the headers the
providers send (request ids, rate-limit budgets, retry hints).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from dspyq.testing.fake_script import Budget, ToolCall

# How a reply ended, whatever the protocol calls it.
Finish = Literal["stop", "length", "tool"]

_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. "
    "For more information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
CREDIT_MESSAGE = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)


@dataclass
class Reply:
    """One choice of an answer: its text, its tool calls and how it ended."""

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish: Finish = "stop"


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def chunk_text(text: str, words_per_chunk: int = 2) -> list[str]:
    """Split text into small pieces (keeping all whitespace) to stream."""
    pieces = re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
    return [
        "".join(pieces[i : i + words_per_chunk]) for i in range(0, len(pieces), words_per_chunk)
    ]


def sse(data: Any, event: str | None = None) -> bytes:
    body = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {body}\n\n".encode()


# --- errors ------------------------------------------------------------------------------


def openai_error(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    kind, default_code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
    if code == "insufficient_quota":
        kind = "insufficient_quota"
    return {
        "error": {"message": message, "type": kind, "param": param, "code": code or default_code}
    }


def anthropic_error(status: int, message: str, request_id: str | None = None) -> dict[str, Any]:
    kind = _ANTHROPIC_ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def context_error(protocol: str, tokens: int, limit: int) -> dict[str, Any]:
    if protocol == "anthropic":
        return anthropic_error(400, f"prompt is too long: {tokens} tokens > {limit} maximum")
    return openai_error(
        400,
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages.",
        code="context_length_exceeded",
        param="messages",
    )


# --- headers ------------------------------------------------------------------------------


def seconds_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def openai_duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    rest_text = seconds_text(round(rest, 3))
    return f"{int(minutes)}m{rest_text}s" if minutes else f"{rest_text}s"


def budget_headers(protocol: str, budget: Budget) -> dict[str, str]:
    """The rate-limit headers each provider sends on every answer."""
    if protocol == "anthropic":
        # Whole seconds, rounded up: a reset stamped early would invite a 429.
        when = datetime.now(UTC) + timedelta(seconds=budget.reset)
        if when.microsecond:
            when = when.replace(microsecond=0) + timedelta(seconds=1)
        reset = when.isoformat(timespec="seconds").replace("+00:00", "Z")
        return {
            "anthropic-ratelimit-requests-limit": str(budget.limit_requests),
            "anthropic-ratelimit-requests-remaining": str(budget.remaining_requests),
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": str(budget.limit_tokens),
            "anthropic-ratelimit-tokens-remaining": str(budget.remaining_tokens),
            "anthropic-ratelimit-tokens-reset": reset,
        }
    reset = openai_duration(budget.reset)
    return {
        "x-ratelimit-limit-requests": str(budget.limit_requests),
        "x-ratelimit-remaining-requests": str(budget.remaining_requests),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(budget.limit_tokens),
        "x-ratelimit-remaining-tokens": str(budget.remaining_tokens),
        "x-ratelimit-reset-tokens": reset,
    }


def retry_headers(
    protocol: str, retry_after: float | None, retry_after_ms: int | None
) -> dict[str, str]:
    """``retry-after`` (both) and ``retry-after-ms`` (OpenAI) for a retryable error."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = seconds_text(retry_after)
    if protocol != "anthropic" and (retry_after_ms is not None or retry_after is not None):
        ms = retry_after_ms if retry_after_ms is not None else round((retry_after or 0) * 1000)
        headers["retry-after-ms"] = str(ms)
    return headers


# --- OpenAI chat completions ---------------------------------------------------------------

OPENAI_FINISH = {"stop": "stop", "length": "length", "tool": "tool_calls"}


def openai_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def openai_tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": new_id("call_"),
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
        }
        for call in reply.tool_calls
    ]


def openai_message(reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if reply.text or not reply.tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_calls:
        message["tool_calls"] = openai_tool_calls(reply)
    return message


def openai_completion(model: str, replies: list[Reply], usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(datetime.now(UTC).timestamp()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": openai_message(reply),
                "logprobs": None,
                "finish_reason": OPENAI_FINISH[reply.finish],
            }
            for i, reply in enumerate(replies)
        ],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }
