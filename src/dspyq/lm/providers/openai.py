"""OpenAI's chat completions protocol, also spoken by vLLM, Ollama, llama.cpp and others."""

from __future__ import annotations

import json
import re
from typing import Any

from dspyq.errors import ProviderUnavailableError
from dspyq.lm.providers.http import StreamDecoder
from dspyq.lm.providers.paced import PacedHTTPProvider
from dspyq.lm.providers.sse import SSEEvent
from dspyq.lm.request import LMChunk, LMRequest, LMResponse, Usage

# Reasoning models refuse ``max_tokens`` and want ``max_completion_tokens`` instead.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    prompt = int(data.get("prompt_tokens") or 0)
    completion = int(data.get("completion_tokens") or 0)
    total = int(data.get("total_tokens") or prompt + completion)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


class OpenAIStreamDecoder(StreamDecoder):
    """``data: {chunk}`` lines ending with ``data: [DONE]``; usage in a last, choice-less chunk."""

    def __init__(self, provider: OpenAIProvider, model: str) -> None:
        self.provider = provider
        self.request_model = model
        self.saw_finish = False

    @property
    def finished(self) -> bool:
        # Some compatible servers end after the finish_reason without a [DONE] line.
        return self.done or self.saw_finish

    def feed(self, event: SSEEvent) -> list[LMChunk]:
        data = event.data.strip()
        if data == "[DONE]":
            self.done = True
            return []
        if not data:
            return []
        payload = json.loads(data)
        if isinstance(payload, dict) and payload.get("error"):
            err = payload["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise ProviderUnavailableError(
                f"{self.provider.config.name} reported an error mid-stream: {message}",
                context={
                    "provider": self.provider.config.name,
                    "model": self.request_model,
                    "status": 200,
                },
            )
        chunks: list[LMChunk] = []
        for choice in payload.get("choices") or []:
            if int(choice.get("index", 0)) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            finish = choice.get("finish_reason")
            if finish:
                self.saw_finish = True
            if text or finish:
                chunks.append(LMChunk(text=text, finish_reason=finish, model=payload.get("model")))
        if payload.get("usage"):
            chunks.append(LMChunk(usage=_usage(payload["usage"]), model=payload.get("model")))
        return chunks


class OpenAIProvider(PacedHTTPProvider):
    """POST ``{api_base}/chat/completions`` with a Bearer key; ``n`` and JSON schema are native."""

    kind = "openai"
    supports_response_schema = True

    def url(self) -> str:
        return self.config.api_base.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        key = self.config.key_value()
        return {"authorization": f"Bearer {key}"} if key else {}

    def build_body(self, request: LMRequest, *, stream: bool) -> dict[str, Any]:
        params = dict(request.params)
        if _REASONING_MODEL.match(request.model) and "max_tokens" in params:
            params["max_completion_tokens"] = params.pop("max_tokens")
        body: dict[str, Any] = {"model": request.model, "messages": request.messages, **params}
        if request.response_format is not None:
            body["response_format"] = request.response_format
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def parse_body(self, body: dict[str, Any], request: LMRequest) -> LMResponse:
        choices = sorted(body["choices"], key=lambda c: int(c.get("index", 0)))
        if not choices:
            raise ValueError("no choices in the answer")
        messages = [c.get("message") or {} for c in choices]
        calls = [m.get("tool_calls") or None for m in messages]
        return LMResponse(
            outputs=[str(m.get("content") or "") for m in messages],
            tool_calls=calls if any(calls) else [],
            usage=_usage(body.get("usage")),
            model=str(body.get("model") or request.model),
            finish_reasons=[c.get("finish_reason") for c in choices],
        )

    def stream_decoder(self, request: LMRequest) -> StreamDecoder:
        return OpenAIStreamDecoder(self, request.model)
