"""One LM call, prepared: call arguments turned into the request, cache key and retry policy.

Kept apart from the facade so the rules for what a call sends, what it caches on and
what it records live in one place.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from dspyq.core import observe
from dspyq.errors import ConfigurationError, InputError
from dspyq.lm.cache import NON_SEMANTIC_KWARGS, cache_key
from dspyq.lm.redact import PII_REDACTED, Redaction, redact_messages
from dspyq.lm.request import LMChunk, LMRequest, LMResponse, Usage
from dspyq.lm.response_format import normalize_response_format
from dspyq.resilience.retry import RetryPolicy


@dataclass
class PreparedCall:
    """The request to send plus what the cache and history need to know about it."""

    prompt: str | None
    request: LMRequest
    history_kwargs: dict[str, Any]
    key: str | None
    policy: RetryPolicy
    redaction: Redaction | None = None
    """What was removed from the messages before sending (None: redaction is off)."""
    redaction_reported: bool = False

    def redact(self) -> None:
        """Replace the request's messages by their redacted copies (the cache key stays).

        The key was computed from the caller's messages, so a cached answer still
        belongs to the input it answered; the history and ``lm_request`` event then
        describe what the provider received.
        """
        messages, self.redaction = redact_messages(self.request.messages)
        self.request = self.request.model_copy(update={"messages": messages})

    def report_redaction(self, provider: str, model: str) -> None:
        """Emit ``pii_redacted`` once, when the request first leaves (counts, never values)."""
        if self.redaction is None or self.redaction_reported or not self.redaction.total:
            return
        self.redaction_reported = True
        observe.emit(
            PII_REDACTED,
            {"provider": provider, "model": model, "counts": self.redaction.as_dict()},
        )


def _messages(prompt: str | None, messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        if prompt is None:
            raise InputError("an LM call needs prompt= or messages=")
        return [{"role": "user", "content": prompt}]
    if prompt is not None:
        raise InputError("pass prompt= or messages= to an LM call, not both")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InputError("messages must be a list of {'role': ..., 'content': ...} dicts")
    # The history keeps these; later edits by the caller must not rewrite it.
    return copy.deepcopy(messages)


def prepare_call(
    *,
    model: str,
    model_name: str,
    defaults: dict[str, Any],
    cache: bool,
    num_retries: int,
    retry_template: RetryPolicy,
    prompt: str | None,
    messages: Any,
    kwargs: dict[str, Any],
) -> PreparedCall:
    """Merge the LM's default options with the call's and build everything the call needs.

    Call options win; ``None`` values are dropped; ``cache``, ``timeout`` and
    ``num_retries`` steer the call without being sent; ``rollout_id`` separates cache
    entries (as in DSPy) without being sent; a pydantic ``response_format`` becomes
    its JSON-schema dict, which is what is hashed and recorded.
    """
    kwargs = dict(kwargs)
    for name in ("api_key", "api_base"):
        if name in kwargs:
            raise ConfigurationError(f"{name} is set on LM(...) or in settings, not per call")
    use_cache = bool(kwargs.pop("cache", cache))
    timeout = kwargs.pop("timeout", None)
    retries = int(kwargs.pop("num_retries", num_retries))
    options = {
        k: v
        for k, v in {**defaults, **kwargs}.items()
        if v is not None and k not in NON_SEMANTIC_KWARGS
    }
    rollout_id = options.pop("rollout_id", None)
    response_format = normalize_response_format(options.pop("response_format", None))
    msgs = _messages(prompt, messages)
    request = LMRequest(
        model=model_name,
        messages=msgs,
        params=options,
        response_format=response_format,
        timeout=float(timeout) if timeout is not None else None,
    )
    history_kwargs = dict(options)
    if response_format is not None:
        history_kwargs["response_format"] = response_format
    if rollout_id is not None:
        history_kwargs["rollout_id"] = rollout_id
    key = None
    if use_cache:
        key = cache_key(
            {
                "model": model,
                "messages": msgs,
                "options": options,
                "response_format": response_format,
                "rollout_id": rollout_id,
            }
        )
    policy = dataclasses.replace(retry_template, num_retries=retries)
    return PreparedCall(prompt, request, history_kwargs, key, policy)


class StreamedResponse:
    """Gathers streamed chunks into the response recorded at the end of a stream."""

    def __init__(self, model: str) -> None:
        self.parts: list[str] = []
        self.usage = Usage()
        self.model = model
        self.finish_reason: str | None = None

    def add(self, chunk: LMChunk) -> None:
        if chunk.text:
            self.parts.append(chunk.text)
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.model:
            self.model = chunk.model
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason

    def response(self) -> LMResponse:
        return LMResponse(
            outputs=["".join(self.parts)],
            usage=self.usage,
            model=self.model,
            finish_reasons=[self.finish_reason],
        )
