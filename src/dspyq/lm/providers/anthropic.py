"""Anthropic's Messages API (``POST /v1/messages``).

Differences from OpenAI handled here: the system prompt is a top-level field, not a
message; ``max_tokens`` is required (default 1024); ``stop`` becomes
``stop_sequences``; ``temperature`` is clamped to Anthropic's range [0, 1]; there is
no ``n``, so n > 1 makes n requests; and there is no JSON mode, so ``response_format``
is ignored (the JSON adapter's prompt still asks for JSON, which Claude follows).
OpenAI-style image and file parts are converted to Anthropic image and document blocks.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from dspyq.errors import (
    BadRequestError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
)
from dspyq.lm.providers.http import StreamDecoder
from dspyq.lm.providers.paced import PacedHTTPProvider
from dspyq.lm.providers.sse import SSEEvent
from dspyq.lm.request import LMChunk, LMRequest, LMResponse, Usage

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024

# Sampling options Anthropic accepts; anything else (OpenAI-only) is not sent.
_PASSTHROUGH = ("temperature", "top_p", "top_k", "metadata", "thinking")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def _base64_source(url: str) -> dict[str, Any] | None:
    if url.startswith("data:") and ";base64," in url:
        header, data = url.split(";base64,", 1)
        return {"type": "base64", "media_type": header[5:], "data": data}
    return None


def _convert_part(part: Any) -> Any:
    """An OpenAI content part as an Anthropic content block (image, document)."""
    if not isinstance(part, dict):
        return part
    if part.get("type") == "image_url":
        image = part.get("image_url") or {}
        url = str(image.get("url", "") if isinstance(image, dict) else image)
        return {"type": "image", "source": _base64_source(url) or {"type": "url", "url": url}}
    if part.get("type") == "file":
        file = part.get("file") or {}
        source = _base64_source(str(file.get("file_data") or ""))
        if source is None and file.get("file_id"):
            source = {"type": "file", "file_id": file["file_id"]}
        if source is None:
            raise BadRequestError("A file sent to Anthropic needs file_data or a file_id")
        block: dict[str, Any] = {"type": "document", "source": source}
        if file.get("filename"):
            block["title"] = file["filename"]
        return block
    if part.get("type") == "input_audio":
        raise BadRequestError("Anthropic's Messages API takes no audio input")
    return part


def _convert_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):
        content = [_convert_part(p) for p in content]
    return {"role": message.get("role", "user"), "content": content}


def _convert_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``tools`` entry as an Anthropic tool (already-Anthropic ones pass)."""
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, dict):
        return tool
    converted = {"name": function["name"], "input_schema": function.get("parameters") or {}}
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


def _tool_choice(params: dict[str, Any]) -> dict[str, Any] | None:
    choice = params.get("tool_choice")
    if isinstance(choice, str):
        choice = {"type": {"required": "any"}.get(choice, choice)}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        choice = {"type": "tool", "name": choice["function"]["name"]}
    if params.get("parallel_tool_calls") is False:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return choice


def _openai_tool_calls(blocks: list[Any]) -> list[dict[str, Any]] | None:
    """``tool_use`` blocks in OpenAI's ``tool_calls`` shape (what adapters read)."""
    calls = [
        {
            "id": block.get("id"),
            "type": "function",
            "function": {
                "name": block.get("name"),
                "arguments": json.dumps(block.get("input") or {}),
            },
        }
        for block in blocks
        if isinstance(block, dict) and block.get("type") == "tool_use"
    ]
    return calls or None


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    return Usage.of(int(data.get("input_tokens") or 0), int(data.get("output_tokens") or 0))


def _stream_error(
    provider: AnthropicProvider, model: str, payload: dict[str, Any]
) -> ProviderError:
    err = payload.get("error") or {}
    kind = str(err.get("type", ""))
    message = (
        f"{provider.config.name} reported {kind or 'an error'} mid-stream: {err.get('message', '')}"
    )
    context = {"provider": provider.config.name, "model": model, "status": 200, "error_code": kind}
    if kind == "rate_limit_error":
        return RateLimitedError(message, context=context)
    if kind == "invalid_request_error":
        return BadRequestError(message, context=context)
    return ProviderUnavailableError(message, context=context)


class AnthropicStreamDecoder(StreamDecoder):
    """message_start / content_block_delta / message_delta / message_stop events."""

    def __init__(self, provider: AnthropicProvider, model: str) -> None:
        self.provider = provider
        self.request_model = model
        self.input_tokens = 0
        self.output_tokens = 0
        self.model: str | None = None

    def feed(self, event: SSEEvent) -> list[LMChunk]:
        if not event.data.strip():
            return []
        payload = json.loads(event.data)
        kind = payload.get("type", event.event)
        if kind == "error":
            raise _stream_error(self.provider, self.request_model, payload)
        if kind == "message_start":
            message = payload.get("message") or {}
            self.model = message.get("model")
            usage = message.get("usage") or {}
            self.input_tokens = int(usage.get("input_tokens") or 0)
            self.output_tokens = int(usage.get("output_tokens") or 0)
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [LMChunk(text=delta["text"], model=self.model)]
        elif kind == "message_delta":
            usage = payload.get("usage") or {}
            if "output_tokens" in usage:
                self.output_tokens = int(usage["output_tokens"] or 0)
            stop = (payload.get("delta") or {}).get("stop_reason")
            if stop:
                return [LMChunk(finish_reason=stop, model=self.model)]
        elif kind == "message_stop":
            self.done = True
            return [
                LMChunk(usage=Usage.of(self.input_tokens, self.output_tokens), model=self.model)
            ]
        return []


class AnthropicProvider(PacedHTTPProvider):
    """POST ``{api_base}/v1/messages`` with ``x-api-key`` and ``anthropic-version`` headers."""

    kind = "anthropic"
    supports_response_schema = False

    def url(self) -> str:
        base = self.config.api_base.rstrip("/")
        return base + ("/messages" if base.endswith("/v1") else "/v1/messages")

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        key = self.config.key_value()
        if key:
            headers["x-api-key"] = key
        return headers

    def build_body(self, request: LMRequest, *, stream: bool) -> dict[str, Any]:
        system = [_text_of(m.get("content")) for m in request.messages if m.get("role") == "system"]
        messages = [_convert_message(m) for m in request.messages if m.get("role") != "system"]
        params = request.params
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": int(params.get("max_tokens") or DEFAULT_MAX_TOKENS),
            "messages": messages,
        }
        if system:
            body["system"] = "\n\n".join(system)
        for name in _PASSTHROUGH:
            if params.get(name) is not None:
                body[name] = params[name]
        if params.get("tools"):
            body["tools"] = [_convert_tool(tool) for tool in params["tools"]]
            choice = _tool_choice(params)
            if choice is not None:
                body["tool_choice"] = choice
        if "temperature" in body:
            body["temperature"] = min(1.0, max(0.0, float(body["temperature"])))
        stop = params.get("stop")
        if stop:
            body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if stream:
            body["stream"] = True
        return body

    def parse_body(self, body: dict[str, Any], request: LMRequest) -> LMResponse:
        blocks = body["content"]
        if not isinstance(blocks, list):
            raise TypeError("content is not a list")
        text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        calls = _openai_tool_calls(blocks)
        return LMResponse(
            outputs=[text],
            tool_calls=[calls] if calls else [],
            usage=_usage(body.get("usage")),
            model=str(body.get("model") or request.model),
            finish_reasons=[body.get("stop_reason")],
        )

    def stream_decoder(self, request: LMRequest) -> StreamDecoder:
        return AnthropicStreamDecoder(self, request.model)

    @staticmethod
    def _merge(responses: list[LMResponse]) -> LMResponse:
        usage = Usage()
        for r in responses:
            usage = usage + r.usage
        return LMResponse(
            outputs=[o for r in responses for o in r.outputs],
            usage=usage,
            model=responses[0].model,
            finish_reasons=[f for r in responses for f in r.finish_reasons],
            tool_calls=(
                [(r.tool_calls or [None])[0] for r in responses]
                if any(r.tool_calls for r in responses)
                else []
            ),
        )

    def complete(self, request: LMRequest) -> LMResponse:
        """n > 1 has no native form here: n sequential requests, usage summed."""
        if request.n <= 1:
            return self.post(request)
        single = request.model_copy(update={"params": {**request.params, "n": 1}})
        return self._merge([self.post(single) for _ in range(request.n)])

    async def acomplete(self, request: LMRequest) -> LMResponse:
        """n > 1 makes n concurrent requests."""
        if request.n <= 1:
            return await self.apost(request)
        single = request.model_copy(update={"params": {**request.params, "n": 1}})
        return self._merge(
            list(await asyncio.gather(*(self.apost(single) for _ in range(request.n))))
        )
