"""DSPy's ``dspy.streaming`` names: ``streamify``, its listeners and its messages."""

from __future__ import annotations

from dspyq.core.stream_listener import StreamListener
from dspyq.core.stream_messages import StatusMessage, StatusMessageProvider, StreamResponse
from dspyq.core.streaming import StreamChunk, apply_sync_streaming, streamify

__all__ = [
    "StatusMessage",
    "StatusMessageProvider",
    "StreamChunk",
    "StreamListener",
    "StreamResponse",
    "apply_sync_streaming",
    "streamify",
]
