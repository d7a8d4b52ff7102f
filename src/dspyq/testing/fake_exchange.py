"""One completion request being answered by the fake server, in any of its protocols.

``openai`` (chat completions), ``anthropic`` (messages) and ``responses`` (OpenAI's
Responses API) share the answer logic: validation, keys, scripted failures, the
rate-limit window, rules, ``max_tokens`` truncation and tool calls; only the wire
shapes differ. Every answer carries the provider's request-id and rate-limit headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from dspyq.testing import fake_protocols as wire
from dspyq.testing import fake_responses, fake_streams
from dspyq.testing.fake_completion import (
    estimate_tokens,
    field_completion,
    message_text,
    schema_value,
)
from dspyq.testing.fake_protocols import Reply
from dspyq.testing.fake_script import Budget, Failure, FakeLMState, ToolCall
from dspyq.testing.fake_validate import chosen_tool, refusal, tool_name


class FakeConnectionReset(Exception):
    """Raised inside a body on purpose: the server drops the connection mid-body."""


class _QuietResets(logging.Filter):
    """uvicorn logs an app error when a body breaks off; ours are on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, FakeConnectionReset):
                return False
            inner = getattr(exc, "exceptions", None)
            exc = inner[0] if inner else exc.__cause__ or exc.__context__
        return True


logging.getLogger("uvicorn.error").addFilter(_QuietResets())


def _limit(body: dict[str, Any], protocol: str) -> int | None:
    names = {"anthropic": ("max_tokens",), "responses": ("max_output_tokens",)}.get(
        protocol, ("max_completion_tokens", "max_tokens")
    )
    for name in names:
        if isinstance(body.get(name), int):
            return int(body[name])
    return None


def _cut(text: str, limit: int | None) -> tuple[str, bool]:
    """``text`` within ``limit`` tokens (about four characters each), and whether it was cut."""
    if limit is None or estimate_tokens(text) <= limit:
        return text, False
    return text[: limit * 4], True


async def _broken(body: AsyncIterator[bytes], *, delay: float, reset: bool) -> AsyncIterator[bytes]:
    """``body`` after ``delay`` seconds; with ``reset``, only its first part, then a drop."""
    if delay:
        await asyncio.sleep(delay)
    parts = [part async for part in body]
    if not reset:
        for part in parts:
            yield part
        return
    data = b"".join(parts)
    yield data[: max(1, len(data) // 2)]
    raise FakeConnectionReset("the fake server dropped the connection mid-body")


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Exchange:
    """See the module docstring."""

    def __init__(self, state: FakeLMState, protocol: str, body: Any, headers: dict[str, str]):
        self.state = state
        self.protocol = protocol
        self.wire = "anthropic" if protocol == "anthropic" else "openai"
        self.body = body
        self.headers = headers
        self.request_id = wire.new_id("req_")
        self.budget: Budget | None = None

    # --- headers and errors -------------------------------------------------------------

    def response_headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        name = "request-id" if self.wire == "anthropic" else "x-request-id"
        headers = {name: self.request_id}
        if self.budget is not None:
            headers.update(wire.budget_headers(self.wire, self.budget))
        return {**headers, **(extra or {})}

    def error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        payload = (
            wire.anthropic_error(status, message, self.request_id)
            if self.wire == "anthropic"
            else wire.openai_error(status, message, code, param)
        )
        return JSONResponse(payload, status_code=status, headers=self.response_headers(headers))

    def _failure_response(self, failure: Failure) -> tuple[Response, str]:
        conf = self.state.config
        if failure.kind == "insufficient_quota":
            if self.wire == "anthropic":
                return self.error(400, failure.message or wire.CREDIT_MESSAGE), "insufficient_quota"
            message = failure.message or wire.QUOTA_MESSAGE
            response = self.error(429, message, code="insufficient_quota", headers=failure.headers)
            return response, "insufficient_quota"
        retry_after = failure.retry_after
        if retry_after is None and failure.status == 429:
            retry_after = conf.retry_after
        extra = {
            **wire.retry_headers(self.wire, retry_after, failure.retry_after_ms),
            **failure.headers,
        }
        message = failure.message or f"fake failure with status {failure.status}"
        response = self.error(failure.status, message, code=failure.code, headers=extra)
        return response, f"failure:{failure.status}"

    def _over_budget(self, budget: Budget) -> Response:
        wait = max(budget.reset, 0.001)
        message = (
            f"Rate limit reached for requests on {self.body.get('model')}. "
            f"Please try again in {wire.openai_duration(wait)}."
        )
        headers = wire.retry_headers(self.wire, round(wait, 3), round(wait * 1000))
        return self.error(429, message, code="rate_limit_exceeded", headers=headers)

    # --- reading the request ---------------------------------------------------------------

    def _has_key(self, expected: str) -> bool:
        if self.protocol == "anthropic":
            return self.headers.get("x-api-key") == expected
        return self.headers.get("authorization") == f"Bearer {expected}"

    def messages(self) -> list[dict[str, Any]]:
        if self.protocol == "responses":
            return fake_responses.conversation(self.body)
        messages = [m for m in self.body["messages"] if isinstance(m, dict)]
        if self.protocol == "anthropic" and self.body.get("system"):
            return [{"role": "system", "content": message_text(self.body["system"])}, *messages]
        return messages

    def _forced_tool(self) -> list[ToolCall]:
        """A tool call with schema-shaped arguments when ``tool_choice`` demands one."""
        choice = self.body.get("tool_choice")
        tools = [t for t in self.body.get("tools") or [] if isinstance(t, dict)]
        if (
            not tools
            or choice in (None, "auto", "none")
            or (isinstance(choice, dict) and choice.get("type") in ("auto", "none"))
        ):
            return []
        wanted = chosen_tool(choice) or tool_name(tools[0], self.protocol)
        for tool in tools:
            if tool_name(tool, self.protocol) == wanted:
                function = tool.get("function") if self.protocol == "openai" else tool
                schema = (function or {}).get("parameters") or tool.get("input_schema") or {}
                arguments = schema_value(schema, schema.get("$defs", {})) or {}
                return [ToolCall(name=str(wanted), arguments=dict(arguments))]
        return []

    def _replies(self, messages: list[dict[str, Any]], conversation: str) -> list[Reply]:
        n = int(self.body.get("n") or 1) if self.protocol == "openai" else 1
        picked = self.state.pick_answers(conversation, n)
        texts = picked.texts
        if texts is None:
            text = field_completion(messages, picked.fields, self.body.get("response_format"))
            texts = [text] * n
        calls = picked.tool_calls or self._forced_tool()
        choice = self.body.get("tool_choice")
        if choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none"):
            calls = []
        if calls and picked.texts is None:
            texts = [""] * n
        limit = _limit(self.body, self.protocol)
        replies = []
        for text in texts:
            cut, truncated = _cut(text, limit)
            if truncated:
                replies.append(Reply(cut, [], "length"))
            else:
                replies.append(Reply(text, list(calls), "tool" if calls else "stop"))
        return replies

    # --- answering ----------------------------------------------------------------------

    async def answer(self, number: int) -> tuple[Response, str]:
        conf = self.state.config
        refused = refusal(
            self.body,
            self.protocol,
            self.headers,
            conf.models,
            self.state.finetunes.succeeded_models(),
        )
        if refused is not None:
            response = self.error(
                refused.status, refused.message, code=refused.code, param=refused.param
            )
            return response, "invalid" if refused.status == 400 else f"failure:{refused.status}"
        if conf.api_key is not None and not self._has_key(conf.api_key):
            return self.error(401, "Incorrect API key provided."), "unauthorized"
        messages = self.messages()
        conversation = "\n".join(message_text(m.get("content")) for m in messages)
        prompt_tokens = estimate_tokens(conversation)
        self.budget = self.state.take_budget(prompt_tokens)
        if self.budget.over:
            return self._over_budget(self.budget), "failure:429"
        failure = self.state.next_failure(number)
        kind = failure.kind if failure else None
        if failure is not None and failure.kind == "slow":
            await asyncio.sleep(failure.delay)
        elif failure is not None and failure.kind in ("status", "insufficient_quota"):
            return self._failure_response(failure)
        if kind == "context_length" or (
            conf.max_context_tokens is not None and prompt_tokens > conf.max_context_tokens
        ):
            limit = conf.max_context_tokens or max(1, prompt_tokens - 1)
            payload = wire.context_error(self.wire, prompt_tokens, limit)
            return JSONResponse(payload, 400, headers=self.response_headers()), "context_length"
        replies = self._replies(messages, conversation)
        completion_tokens = sum(
            estimate_tokens(r.text)
            + sum(estimate_tokens(json.dumps(c.arguments)) for c in r.tool_calls)
            for r in replies
        )
        outcome = "answer" if kind is None else f"failure:{kind}"
        streaming = self.body.get("stream") is True
        if kind == "malformed":
            if streaming:
                return self._streamed(_once(b"data: {this is not json\n\n")), outcome
            return Response("{this is not json", media_type="application/json"), outcome
        if kind == "stream_error" and not streaming:
            return self.error(500, "fake failure with status 500"), "failure:500"
        if streaming:
            body = self._stream(replies, prompt_tokens, completion_tokens, kind)
        else:
            text = json.dumps(self._payload(replies, prompt_tokens, completion_tokens))
            if kind == "truncated":
                text = text[: len(text) // 2]
            if kind not in ("reset", "slow_first_byte"):
                return Response(
                    text, media_type="application/json", headers=self.response_headers()
                ), outcome
            body = _once(text.encode())
        if kind in ("reset", "slow_first_byte"):
            delay = failure.delay if failure is not None else 0.0
            body = _broken(body, delay=delay, reset=kind == "reset")
        media = "text/event-stream" if streaming else "application/json"
        return self._streamed(body, media), outcome

    def _streamed(self, body: AsyncIterator[bytes], media: str = "text/event-stream") -> Response:
        return StreamingResponse(body, media_type=media, headers=self.response_headers())

    def _payload(
        self, replies: list[Reply], prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        model = str(self.body["model"])
        if self.protocol == "anthropic":
            return fake_streams.anthropic_message(
                model, replies[0], prompt_tokens, completion_tokens
            )
        if self.protocol == "responses":
            return fake_responses.response_object(
                self.body, replies[0], prompt_tokens, completion_tokens
            )
        usage = wire.openai_usage(prompt_tokens, completion_tokens)
        return wire.openai_completion(model, replies, usage)

    def _stream(
        self, replies: list[Reply], prompt_tokens: int, completion_tokens: int, kind: str | None
    ) -> AsyncIterator[bytes]:
        delay = self.state.config.chunk_delay
        cut, fail = kind == "truncated", kind == "stream_error"
        model = str(self.body["model"])
        if self.protocol == "anthropic":
            return fake_streams.anthropic_stream(
                model,
                replies[0],
                prompt_tokens,
                completion_tokens,
                chunk_delay=delay,
                truncate=cut,
                fail=fail,
            )
        if self.protocol == "responses":
            final = fake_responses.response_object(
                self.body, replies[0], prompt_tokens, completion_tokens
            )
            return fake_responses.response_stream(final, chunk_delay=delay, truncate=cut, fail=fail)
        options = self.body.get("stream_options") or {}
        usage = (
            wire.openai_usage(prompt_tokens, completion_tokens)
            if options.get("include_usage")
            else None
        )
        return fake_streams.openai_stream(
            model, replies, usage, chunk_delay=delay, truncate=cut, fail=fail
        )
