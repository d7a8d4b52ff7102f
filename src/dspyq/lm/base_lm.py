"""``BaseLM``: the base of custom LMs, as DSPy 3.4.1's ``dspy.BaseLM``.

A subclass implements ``forward`` (and ``aforward`` for async use) returning an
OpenAI-shaped chat completion (``choices[i].message.content``, optional ``tool_calls``,
``usage``, ``model``), as an object or a dict. Calling the LM returns one output per
choice: the text, or a dict with ``text`` and the extras (``tool_calls``,
``reasoning_content``, ``logprobs``) when a choice has any. ``forward`` receives the
call's own options; the defaults given at construction stay in ``self.kwargs``.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, TextIO

from dspyq.lm.history import record
from dspyq.lm.pretty import pretty_print_history


def _value(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` or ``obj.key``: responses may be SDK objects or plain dicts."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


class BaseLM:
    """Subclass and implement ``forward``/``aforward`` to plug in any model."""

    def __init__(
        self,
        model: str,
        model_type: str = "chat",
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: bool = True,
        callbacks: list[Any] | None = None,
        num_retries: int = 3,
        **kwargs: Any,
    ) -> None:
        self.model = model
        self.model_type = model_type
        self.cache = cache
        self.callbacks = list(callbacks or [])
        self.num_retries = num_retries
        self.kwargs: dict[str, Any] = dict(temperature=temperature, max_tokens=max_tokens, **kwargs)
        self.history: list[dict[str, Any]] = []

    # What the adapters ask before using a native feature; a subclass says yes by overriding.
    supports_function_calling = False
    supports_reasoning = False
    supports_response_schema = False

    def forward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        raise NotImplementedError("Subclasses of BaseLM implement forward()")

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:
        raise NotImplementedError("Subclasses of BaseLM implement aforward() for async use")

    def __call__(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        # As DSPy 3.4.1 calls a custom LM: forward gets this call's options only (its
        # defaults in ``self.kwargs`` are the subclass's to apply).
        response = self.forward(prompt=prompt, messages=messages, **kwargs)
        return self._outputs(prompt, messages, {**self.kwargs, **kwargs}, response)

    async def acall(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        response = await self.aforward(prompt=prompt, messages=messages, **kwargs)
        return self._outputs(prompt, messages, {**self.kwargs, **kwargs}, response)

    def _outputs(
        self, prompt: Any, messages: Any, merged: dict[str, Any], response: Any
    ) -> list[Any]:
        outputs: list[dict[str, Any]] = []
        for choice in _value(response, "choices", []) or []:
            message = _value(choice, "message")
            text = _value(message, "content") if message is not None else _value(choice, "text")
            output: dict[str, Any] = {"text": text}
            if reasoning := _value(message, "reasoning_content"):
                output["reasoning_content"] = reasoning
            if merged.get("logprobs"):
                output["logprobs"] = _value(choice, "logprobs")
            if calls := _value(message, "tool_calls"):
                output["tool_calls"] = _jsonable(calls)
            outputs.append(output)
        entry = {
            "prompt": prompt,
            "messages": messages,
            "kwargs": {k: v for k, v in merged.items() if not k.startswith("api_")},
            "response": response,
            "outputs": [o["text"] for o in outputs],
            "usage": _jsonable(_value(response, "usage")) or {},
            "model": self.model,
            "timestamp": datetime.datetime.now().isoformat(),
            "uuid": str(uuid.uuid4()),
            "model_type": self.model_type,
        }
        self.history.append(entry)
        record(entry)  # the global history too, so dspyq.inspect_history() shows it
        if all(len(output) == 1 for output in outputs):
            return [output["text"] for output in outputs]
        return outputs

    def copy(self, **kwargs: Any) -> BaseLM:
        """A copy with some attributes or default request options changed."""
        import copy

        new = copy.deepcopy(self)
        new.history = []
        for key, value in kwargs.items():
            if hasattr(self, key):
                setattr(new, key, value)
            if key in self.kwargs or not hasattr(self, key):
                new.kwargs[key] = value
        return new

    def inspect_history(self, n: int = 1, file: TextIO | None = None) -> None:
        """Print this LM's last ``n`` calls, laid out as DSPy does."""
        pretty_print_history(self.history, n, file=file)
