"""OpenAI's Responses API (``POST /v1/responses``) as the fake server speaks it.

The request's ``instructions`` and ``input`` (a string or a list of message items)
become the conversation; the answer is a ``response`` object whose ``output`` holds a
message item and any ``function_call`` items, or, streamed, the typed events
(``response.created`` ... ``response.completed``) with a ``sequence_number`` each.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from dspyq.testing import fake_protocols as wire
from dspyq.testing.fake_completion import message_text
from dspyq.testing.fake_protocols import Reply


def conversation(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request as chat messages (system first), for the answer logic."""
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": str(body["instructions"])})
    given = body.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif isinstance(given, list):
        for item in given:
            if isinstance(item, dict) and "role" in item:
                role = "system" if item["role"] == "developer" else str(item["role"])
                messages.append({"role": role, "content": message_text(item.get("content"))})
    return messages


def validate(body: dict[str, Any]) -> str | None:
    given = body.get("input")
    if not isinstance(given, (str, list)) or not given:
        return "Missing required parameter: 'input'."
    return None


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _items(reply: Reply, status: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if reply.text or not reply.tool_calls:
        items.append(
            {
                "type": "message",
                "id": wire.new_id("msg_"),
                "status": status,
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
            }
        )
    for call in reply.tool_calls:
        items.append(
            {
                "type": "function_call",
                "id": wire.new_id("fc_"),
                "call_id": wire.new_id("call_"),
                "name": call.name,
                "arguments": json.dumps(call.arguments),
                "status": "completed",
            }
        )
    return items


def response_object(
    body: dict[str, Any], reply: Reply | None, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    """A ``response``: in progress (``reply`` None), completed, or incomplete at the limit."""
    status = "in_progress" if reply is None else "completed"
    if reply is not None and reply.finish == "length":
        status = "incomplete"
    item_status = "incomplete" if status == "incomplete" else "completed"
    return {
        "id": wire.new_id("resp_"),
        "object": "response",
        "created_at": int(datetime.now(UTC).timestamp()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": str(body.get("model")),
        "output": [] if reply is None else _items(reply, item_status),
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None if reply is None else _usage(input_tokens, output_tokens),
        "user": None,
        "metadata": {},
    }


async def response_stream(
    final: dict[str, Any], *, chunk_delay: float = 0.0, truncate: bool = False, fail: bool = False
) -> AsyncIterator[bytes]:
    """The typed events of one response; ``truncate`` stops before ``response.completed``."""
    number = 0

    def event(kind: str, **payload: Any) -> bytes:
        nonlocal number
        number += 1
        return wire.sse({"type": kind, "sequence_number": number - 1, **payload}, kind)

    opening = {**final, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=opening)
    yield event("response.in_progress", response=opening)
    for index, item in enumerate(final["output"]):
        if item["type"] != "message":
            yield event("response.output_item.added", output_index=index, item=item)
            yield event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
            yield event("response.output_item.done", output_index=index, item=item)
            continue
        text = item["content"][0]["text"]
        empty_part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        yield event(
            "response.output_item.added",
            output_index=index,
            item={**item, "status": "in_progress", "content": []},
        )
        yield event("response.content_part.added", part=empty_part, **where)
        pieces = wire.chunk_text(text)
        if truncate:
            pieces = pieces[: max(1, len(pieces) // 2)]
        for piece in pieces:
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
            yield event("response.output_text.delta", delta=piece, logprobs=[], **where)
            if fail:
                yield event(
                    "error", code="server_error", message="The server had an error.", param=None
                )
                return
        if truncate:
            return
        yield event("response.output_text.done", text=text, logprobs=[], **where)
        yield event("response.content_part.done", part=item["content"][0], **where)
        yield event("response.output_item.done", output_index=index, item=item)
    done = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    yield event(done, response=final)
