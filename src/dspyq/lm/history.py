"""A record of recent LM calls, per process.

Every LM appends its entries both to its own ``lm.history`` and to the global ring
buffer here, so ``inspect_history()`` shows the last calls whichever LM made them
(printed by ``dspyq.lm.pretty``).
Entries never hold API keys: the LM records messages, options, outputs and costs only.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, TextIO

from dspyq.lm.pretty import pretty_print_history

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


def inspect_history(n: int = 1, file: TextIO | None = None) -> None:
    """Print the last ``n`` LM calls made in this process, laid out as DSPy does."""
    pretty_print_history(global_history(), n, file=file)
