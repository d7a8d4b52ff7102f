"""What a streamed program yields besides the LM's text: field chunks and status lines.

As DSPy 3.4.1's ``dspy.streaming`` messages: :class:`StreamResponse` is one piece of a
listened field, :class:`StatusMessage` a progress line from a
:class:`StatusMessageProvider` (by default only around tool calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dspyq.core.callbacks import BaseCallback
from dspyq.core.context import current

__all__ = ["StatusMessage", "StatusMessageProvider", "StatusStreamingCallback", "StreamResponse"]


@dataclass
class StreamResponse:
    """One piece of the field ``signature_field_name`` of the predictor ``predict_name``."""

    predict_name: str | None
    signature_field_name: str
    chunk: str
    is_last_chunk: bool


@dataclass
class StatusMessage:
    """A progress line of a streamed program."""

    message: str


class StatusMessageProvider:
    """The status lines of a streamed program; override a method to change or add one
    (a method returning ``None`` sends nothing)."""

    def tool_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> Any:
        return f"Calling tool {instance.name}..."

    def tool_end_status_message(self, outputs: Any) -> Any:
        return "Tool calling finished! Querying the LLM with tool calling results..."

    def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> Any:
        return None

    def module_end_status_message(self, outputs: Any) -> Any:
        return None

    def lm_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> Any:
        return None

    def lm_end_status_message(self, outputs: Any) -> Any:
        return None


class StatusStreamingCallback(BaseCallback):
    """Sends the provider's lines to the stream of the program being streamed."""

    def __init__(self, status_message_provider: StatusMessageProvider | None = None) -> None:
        self.status_message_provider = status_message_provider or StatusMessageProvider()

    def _send(self, message: Any) -> None:
        settings = current()
        send = settings.get("send_status")
        # Not from inside a predictor whose LM calls do not stream (see stream_scope).
        if send is not None and settings.get("send_stream") is not None and message:
            send(StatusMessage(message))

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if instance.name != "finish":  # ReAct's own last step is no tool call to report
            provider = self.status_message_provider
            self._send(provider.tool_start_status_message(instance, inputs))

    def on_tool_end(self, call_id: str, outputs: Any, exception: Any = None) -> None:
        if outputs != "Completed.":
            self._send(self.status_message_provider.tool_end_status_message(outputs))

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._send(self.status_message_provider.lm_start_status_message(instance, inputs))

    def on_lm_end(self, call_id: str, outputs: Any, exception: Any = None) -> None:
        self._send(self.status_message_provider.lm_end_status_message(outputs))

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._send(self.status_message_provider.module_start_status_message(instance, inputs))

    def on_module_end(self, call_id: str, outputs: Any, exception: Any = None) -> None:
        self._send(self.status_message_provider.module_end_status_message(outputs))
