"""Server-sent events, as both OpenAI and Anthropic stream them.

A small incremental parser: feed it lines, it hands back complete events. Only what
the two protocols use is supported (``event:``, ``data:``, comments, blank-line
dispatch); ``id:`` and ``retry:`` are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its type (``message`` when unnamed) and its data text."""

    event: str
    data: str


class SSEParser:
    """Turns a stream of text lines into :class:`SSEEvent` objects."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SSEEvent | None:
        """Consume one line (without its newline); return an event when one completes."""
        line = line.rstrip("\r")
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def flush(self) -> SSEEvent | None:
        """Dispatch whatever has been gathered (at a blank line or the end of the stream)."""
        if not self._data and not self._event:
            return None
        event = SSEEvent(event=self._event or "message", data="\n".join(self._data))
        self._event = ""
        self._data = []
        return event
