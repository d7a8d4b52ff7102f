"""``DummyLM``: a scripted LM for tests, with the three modes of DSPy's ``dspy.utils.DummyLM``.

- a list of dicts: each call answers with the next dict, formatted for the adapter;
- a dict of dicts: the answer whose key occurs in the last message's content;
- ``follow_examples=True``: the demo answer whose input equals the request's.

It runs in this process and never makes a network call; its history entries have the
keys of an LM's history, with zero usage.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

from dspyq.core.callbacks import with_callbacks
from dspyq.core.context import setting
from dspyq.lm import history as global_history
from dspyq.lm.pretty import pretty_print_history
from dspyq.lm.usage import record_usage

__all__ = ["DummyLM"]

_FIELD_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_NO_MORE = "No more responses"
# The usage DSPy's DummyLM reports per call (and its tracker records).
_ZERO_USAGE: dict[str, Any] = {
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "total_tokens": 0,
    "prompt_tokens_details": None,
    "completion_tokens_details": None,
}


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class DummyLM:
    """A scripted LM; see the module docstring."""

    is_lm = True  # callbacks treat it as an LM (on_lm_start / on_lm_end)

    def __init__(
        self,
        answers: list[dict[str, Any]] | dict[str, dict[str, Any]],
        follow_examples: bool = False,
        reasoning: bool = False,
        adapter: Any = None,
    ) -> None:
        self.model = "dummy"
        self.model_type = "chat"
        self.cache = True
        self.kwargs: dict[str, Any] = {"temperature": 0.0, "max_tokens": 1000}
        self.callbacks: list[Any] = []
        self.history: list[dict[str, Any]] = []
        self.answers: Iterator[dict[str, Any]] | dict[str, dict[str, Any]] = (
            iter(answers) if isinstance(answers, list) else answers
        )
        self.follow_examples = follow_examples
        self.reasoning = reasoning
        self.adapter = adapter
        self._lock = threading.Lock()

    def _format(self, values: dict[str, Any]) -> str:
        from dspyq.adapters.json_adapter import JSONAdapter
        from dspyq.adapters.xml_adapter import XMLAdapter

        if isinstance(self.adapter, JSONAdapter):
            return json.dumps(values, indent=2, ensure_ascii=False)
        if isinstance(self.adapter, XMLAdapter):  # DSPy's fields here carry no type: no escaping
            return "\n\n".join(f"<{k}>\n{_value_text(v)}\n</{k}>" for k, v in values.items())
        return "\n\n".join(f"[[ ## {k} ## ]]\n{_value_text(v)}" for k, v in values.items())

    def _use_example(self, messages: list[dict[str, Any]]) -> str | None:
        counts: defaultdict[str, int] = defaultdict(int)
        for message in messages:
            match = _FIELD_HEADER.match(str(message.get("content", "")))
            if match:
                counts[match.group(0)] += 1
        most = max(counts.values()) if counts else 0
        output_fields = [name for name, count in counts.items() if count != most]
        final_input = str(messages[-1]["content"]).split("\n\n")[0]
        for request, answer in zip(reversed(messages[:-1]), reversed(messages), strict=False):
            content = str(answer["content"])
            if any(f in content for f in output_fields) and final_input in request["content"]:
                return content
        return None

    def _answer(self, messages: list[dict[str, Any]]) -> str:
        with self._lock:
            if self.follow_examples:
                return self._use_example(messages) or ""
            if isinstance(self.answers, dict):
                last = str(messages[-1]["content"])
                return next(
                    (self._format(v) for k, v in self.answers.items() if k in last), _NO_MORE
                )
            return self._format(next(self.answers, {"answer": _NO_MORE}))

    def forward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[str]:
        messages = messages if messages is not None else [{"role": "user", "content": prompt}]
        outputs = [self._answer(messages) for _ in range(int(kwargs.get("n") or 1))]
        send = setting("send_stream")
        if send is not None and len(outputs) == 1:  # streamed in one chunk, as a cached answer
            send(outputs[0], uuid.uuid4().hex)
        entry = {
            "prompt": prompt,
            "messages": messages,
            "kwargs": dict(kwargs),
            # DSPy keeps its scripted response object here; ours is the same facts as a dict.
            "response": {
                "text": outputs[0] if len(outputs) == 1 else outputs,
                "model": self.model,
                "finish_reason": "stop",
                "usage": dict(_ZERO_USAGE),
            },
            "outputs": outputs,
            "usage": dict(_ZERO_USAGE),
            "cost": 0.0,
            "timestamp": datetime.now().isoformat(),  # DSPy's: local time, as inspect_history shows it
            "uuid": uuid.uuid4().hex,
            "model": self.model,
            "response_model": self.model,
            "model_type": self.model_type,
        }
        self.history.append(entry)
        global_history.record(entry)
        record_usage(self.model, dict(_ZERO_USAGE))  # details added as None, as DSPy's
        return outputs

    @with_callbacks
    def __call__(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[str]:
        return self.forward(prompt, messages, **kwargs)

    @with_callbacks
    async def acall(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[str]:
        return self.forward(prompt, messages, **kwargs)

    def get_convo(self, index: int) -> tuple[Any, Any]:
        """The messages and outputs of the ``index``-th call."""
        return self.history[index]["messages"], self.history[index]["outputs"]

    def inspect_history(self, n: int = 1, file: TextIO | None = None) -> None:
        """Print this LM's last ``n`` calls, laid out as DSPy does."""
        pretty_print_history(self.history, n, file=file)

    def copy(self, **kwargs: Any) -> DummyLM:
        clone = copy.copy(self)
        clone.kwargs = {**self.kwargs, **kwargs}
        clone.history = []
        clone._lock = threading.Lock()
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> DummyLM:
        # A lock cannot be deep-copied; the script is, as in DSPy's copies.
        clone = copy.copy(self)
        clone.answers = copy.deepcopy(self.answers, memo)
        clone.history = list(self.history)
        clone._lock = threading.Lock()
        return clone

    def dump_state(self) -> dict[str, Any]:
        return {"model": self.model, "model_type": self.model_type, **self.kwargs}
