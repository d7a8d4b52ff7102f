"""Scripted LMs for comparison tests whose answer depends on the request, DSPy's and ours.

Both call ``respond(messages, lm_kwargs, log)``; copies (``lm.copy(rollout_id=...)``)
share the responder and the log, so answers can depend on the rollout an optimizer drew.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dspy

from dspyq.utils import DummyLM

Responder = Callable[[list[dict[str, Any]], dict[str, Any], list[Any]], str]


def reply(**fields: str) -> str:
    """A completion in the chat adapter's format."""
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in fields.items()) + "[[ ## completed ## ]]"


class DspyKeyedLM(dspy.BaseLM):
    def __init__(self, respond: Responder, log: list[Any]) -> None:
        super().__init__(model="scripted")
        self.respond, self.log = respond, log

    def copy(self, **kwargs: Any) -> DspyKeyedLM:
        clone = DspyKeyedLM(self.respond, self.log)
        clone.kwargs = {**self.kwargs, **kwargs}
        return clone

    def __call__(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> list[str]:
        return [self.respond(messages, self.kwargs, self.log)]


class KeyedLM(DummyLM):
    def __init__(self, respond: Responder, log: list[Any]) -> None:
        super().__init__([])
        self.respond, self.log = respond, log
        self.kwargs = {"temperature": None}  # DSPy's BaseLM default, so logs compare

    def _answer(self, messages: list[dict[str, Any]]) -> str:
        return self.respond(messages, self.kwargs, self.log)
