"""The fake server's streamed answers: chat completion chunks and Anthropic message events.

Each stream can be cut short (``truncate``: no end marker) or break off with the
protocol's error event after its first text chunk (``fail``), as the providers do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from dspyq.testing import fake_protocols as wire
from dspyq.testing.fake_protocols import Reply

_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use"}


async def openai_stream(
    model: str,
    replies: list[Reply],
    usage: dict[str, Any] | None,
    *,
    chunk_delay: float = 0.0,
    truncate: bool = False,
    fail: bool = False,
) -> AsyncIterator[bytes]:
    """Chunks for every choice, a finish chunk each, the usage chunk if asked, then [DONE]."""
    ident = wire.new_id("chatcmpl-")
    created = int(datetime.now(UTC).timestamp())

    def chunk(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
        payload = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
            **(extra or {}),
        }
        return wire.sse(payload)

    def delta(i: int, body: dict[str, Any]) -> bytes:
        return chunk([{"index": i, "delta": body, "logprobs": None, "finish_reason": None}])

    for i in range(len(replies)):
        yield delta(i, {"role": "assistant", "content": "", "refusal": None})
    pieces = [wire.chunk_text(r.text) for r in replies]
    if truncate:
        pieces = [p[: max(1, len(p) // 2)] for p in pieces]
    for step in range(max((len(p) for p in pieces), default=0)):
        for i, parts in enumerate(pieces):
            if step < len(parts):
                if chunk_delay:
                    await asyncio.sleep(chunk_delay)
                yield delta(i, {"content": parts[step]})
                if fail:
                    message = "The server had an error while processing your request."
                    yield wire.sse(wire.openai_error(500, message))
                    return
    if truncate:
        return
    for i, reply in enumerate(replies):
        for n, call in enumerate(wire.openai_tool_calls(reply)):
            function = call["function"]
            opening = {**call, "function": {"name": function["name"], "arguments": ""}}
            yield delta(i, {"tool_calls": [{"index": n, **opening}]})
            yield delta(
                i, {"tool_calls": [{"index": n, "function": {"arguments": function["arguments"]}}]}
            )
    for i, reply in enumerate(replies):
        finish = wire.OPENAI_FINISH[reply.finish]
        yield chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": finish}])
    if usage is not None:
        yield chunk([], {"usage": usage})
    yield wire.sse("[DONE]")


# --- Anthropic messages ---------------------------------------------------------------------


def anthropic_blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text or not reply.tool_calls:
        blocks.append({"type": "text", "text": reply.text})
    for call in reply.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": wire.new_id("toolu_"),
                "name": call.name,
                "input": call.arguments,
            }
        )
    return blocks


def anthropic_message(
    model: str, reply: Reply, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    return {
        "id": wire.new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": anthropic_blocks(reply),
        "stop_reason": _ANTHROPIC_STOP[reply.finish],
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def _event(kind: str, **payload: Any) -> bytes:
    return wire.sse({"type": kind, **payload}, kind)


async def anthropic_stream(
    model: str,
    reply: Reply,
    input_tokens: int,
    output_tokens: int,
    *,
    chunk_delay: float = 0.0,
    truncate: bool = False,
    fail: bool = False,
) -> AsyncIterator[bytes]:
    """message_start, a text block of deltas, tool_use blocks, message_delta, message_stop.

    ``fail`` sends an ``overloaded_error`` event after the first delta, as Anthropic
    does under load.
    """
    start = anthropic_message(model, reply, input_tokens, 1)
    start["content"] = []
    start["stop_reason"] = None
    yield _event("message_start", message=start)
    blocks = anthropic_blocks(reply)
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            yield _event(
                "content_block_start", index=index, content_block={"type": "text", "text": ""}
            )
            if index == 0:
                yield _event("ping")
            pieces = wire.chunk_text(block["text"])
            if truncate:
                pieces = pieces[: max(1, len(pieces) // 2)]
            for piece in pieces:
                if chunk_delay:
                    await asyncio.sleep(chunk_delay)
                yield _event(
                    "content_block_delta", index=index, delta={"type": "text_delta", "text": piece}
                )
                if fail:
                    yield wire.sse(wire.anthropic_error(529, "Overloaded"), "error")
                    return
            if truncate:
                return
        else:
            opening = {**block, "input": {}}
            yield _event("content_block_start", index=index, content_block=opening)
            partial = json.dumps(block["input"])
            yield _event(
                "content_block_delta",
                index=index,
                delta={"type": "input_json_delta", "partial_json": partial},
            )
        yield _event("content_block_stop", index=index)
    yield _event(
        "message_delta",
        delta={"stop_reason": _ANTHROPIC_STOP[reply.finish], "stop_sequence": None},
        usage={"output_tokens": output_tokens},
    )
    yield _event("message_stop")
