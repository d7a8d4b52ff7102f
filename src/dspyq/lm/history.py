"""A record of recent LM calls, per process, and a readable printout of it.

Every LM appends its entries both to its own ``lm.history`` and to the global ring
buffer here, so ``inspect_history()`` shows the last calls whichever LM made them.
Entries never hold API keys: the LM records messages, options, outputs and costs only.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.text import Text

MAX_HISTORY = 10_000

_GLOBAL: deque[dict[str, Any]] = deque(maxlen=MAX_HISTORY)
_LOCK = threading.Lock()


def record(entry: dict[str, Any]) -> None:
    """Append one call's entry to the global history."""
    with _LOCK:
        _GLOBAL.append(entry)


def set_history_size(size: int) -> None:
    """Keep at most ``size`` entries in the global history (the newest ones).

    A worker keeps few: nobody reads its history, each entry holds a call's messages
    (kilobytes), and 10,000 of them were most of a worker's memory growth in a soak run.
    """
    global _GLOBAL
    if size < 0:
        raise ValueError(f"history size must be >= 0, got {size}")
    with _LOCK:
        _GLOBAL = deque(_GLOBAL, maxlen=size)


def global_history() -> list[dict[str, Any]]:
    """A copy of the global history, oldest first."""
    with _LOCK:
        return list(_GLOBAL)


def clear_history() -> None:
    """Forget the global history (each LM keeps its own ``lm.history``)."""
    with _LOCK:
        _GLOBAL.clear()


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict) and part.get("type") == "image_url":
                image = part.get("image_url") or {}
                url = str(image.get("url", "") if isinstance(image, dict) else image)
                parts.append(f"<image {url[:60]}{'...' if len(url) > 60 else ''}>")
            else:
                parts.append(str(part))
        return "\n".join(parts)
    return "" if content is None else str(content)


def _summary(entry: dict[str, Any]) -> str:
    bits = [str(entry.get("timestamp", "")), str(entry.get("model", ""))]
    if entry.get("cache_hit"):
        bits.append("cache hit")
    else:
        bits.append(f"{float(entry.get('duration_ms') or 0):.0f} ms")
        usage = entry.get("usage") or {}
        bits.append(f"{usage.get('total_tokens', 0)} tokens")
        bits.append(f"${float(entry.get('cost') or 0):.6f}")
    return " | ".join(bits)


def render_entry(entry: dict[str, Any]) -> Text:
    """One call as plain, sectioned text: a summary line, each message, then the response."""
    text = Text()
    text.append(f"[{_summary(entry)}]\n\n", style="dim")
    for message in entry.get("messages") or []:
        role = str(message.get("role", "user")).capitalize()
        text.append(f"{role} message:\n\n", style="bold")
        text.append(_content_text(message.get("content")) + "\n\n")
    outputs = entry.get("outputs") or []
    for i, output in enumerate(outputs):
        label = "Response" if len(outputs) == 1 else f"Response ({i + 1} of {len(outputs)})"
        text.append(f"{label}:\n\n", style="bold")
        text.append(str(output) + "\n\n", style="green")
    text.rstrip()
    return text


def print_history(entries: Iterable[dict[str, Any]], console: Console | None = None) -> None:
    """Print entries to stdout (or ``console``), oldest first, separated by blank lines."""
    out = console or Console(highlight=False, soft_wrap=True)
    for entry in entries:
        out.print(render_entry(entry))
        out.print()


def inspect_history(n: int = 1, console: Console | None = None) -> None:
    """Print the last ``n`` LM calls made in this process, messages and responses."""
    entries = global_history()
    print_history(entries[-n:] if n > 0 else [], console)
