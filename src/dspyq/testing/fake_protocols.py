"""Wire shapes of the fake server's answers: OpenAI and Anthropic bodies, errors and SSE.

Only what a client can observe is imitated: field names, event order, the
``data: [DONE]`` terminator, usage placement and error body layout.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

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


def chunk_text(text: str, words_per_chunk: int = 2) -> list[str]:
    """Split text into small pieces (keeping all whitespace) to stream."""
    pieces = re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
    return [
        "".join(pieces[i : i + words_per_chunk]) for i in range(0, len(pieces), words_per_chunk)
    ]


def _sse(data: Any, event: str | None = None) -> bytes:
    body = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {body}\n\n".encode()


# --- errors ------------------------------------------------------------------------------


def openai_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kind, default_code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
    return {
        "error": {"message": message, "type": kind, "param": None, "code": code or default_code}
    }


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = _ANTHROPIC_ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    return {"type": "error", "error": {"type": kind, "message": message}}


def context_error(protocol: str, tokens: int, limit: int) -> dict[str, Any]:
    if protocol == "anthropic":
        return anthropic_error(400, f"prompt is too long: {tokens} tokens > {limit} maximum")
    return openai_error(
        400,
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages.",
        code="context_length_exceeded",
    )


# --- OpenAI chat completions ---------------------------------------------------------------


def openai_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def openai_completion(model: str, texts: list[str], usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for i, text in enumerate(texts)
        ],
        "usage": usage,
        "system_fingerprint": "fp_fake",
    }


async def openai_stream(
    model: str,
    texts: list[str],
    usage: dict[str, int] | None,
    *,
    chunk_delay: float = 0.0,
    truncate: bool = False,
    fail: bool = False,
) -> AsyncIterator[bytes]:
    """Chunks for every choice, a finish chunk each, the usage chunk if asked, then [DONE].

    ``truncate`` stops halfway without an end; ``fail`` sends an error event after the
    first text chunk, as OpenAI does when a generation breaks off.
    """
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
        payload = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **(extra or {}),
        }
        return _sse(payload)

    for i in range(len(texts)):
        yield chunk(
            [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )
    pieces = [chunk_text(t) for t in texts]
    if truncate:
        pieces = [p[: max(1, len(p) // 2)] for p in pieces]
    for step in range(max((len(p) for p in pieces), default=0)):
        for i, parts in enumerate(pieces):
            if step < len(parts):
                if chunk_delay:
                    await asyncio.sleep(chunk_delay)
                yield chunk(
                    [{"index": i, "delta": {"content": parts[step]}, "finish_reason": None}]
                )
                if fail:
                    message = "The server had an error while processing your request."
                    yield _sse(openai_error(500, message))
                    return
    if truncate:
        return
    for i in range(len(texts)):
        yield chunk([{"index": i, "delta": {}, "finish_reason": "stop"}])
    if usage is not None:
        yield chunk([], {"usage": usage})
    yield _sse("[DONE]")


# --- Anthropic messages ---------------------------------------------------------------------


def anthropic_message(
    model: str, text: str, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


async def anthropic_stream(
    model: str,
    text: str,
    input_tokens: int,
    output_tokens: int,
    *,
    chunk_delay: float = 0.0,
    truncate: bool = False,
    fail: bool = False,
) -> AsyncIterator[bytes]:
    """message_start, one text block of deltas, message_delta with usage, message_stop.

    ``truncate`` stops halfway without message_stop; ``fail`` sends an ``overloaded_error``
    event after the first delta, as Anthropic does under load.
    """
    start = anthropic_message(model, "", input_tokens, 1)
    start["content"] = []
    start["stop_reason"] = None
    yield _sse({"type": "message_start", "message": start}, "message_start")
    yield _sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    yield _sse({"type": "ping"}, "ping")
    pieces = chunk_text(text)
    if truncate:
        pieces = pieces[: max(1, len(pieces) // 2)]
    for piece in pieces:
        if chunk_delay:
            await asyncio.sleep(chunk_delay)
        yield _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
            "content_block_delta",
        )
        if fail:
            yield _sse(anthropic_error(529, "Overloaded"), "error")
            return
    if truncate:
        return
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    yield _sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        "message_delta",
    )
    yield _sse({"type": "message_stop"}, "message_stop")
