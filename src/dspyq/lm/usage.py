"""``track_usage``: token usage per LM, per call, inside a ``with`` block (DSPy's tracker).

Every answered call that was not a cache hit adds its usage under the LM's model name;
``get_total_tokens()`` sums the counts per LM. Nested blocks roll their entries up
into the enclosing tracker when they close, as in DSPy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dspyq.core.context import context, setting

__all__ = ["UsageTracker", "record_usage", "track_usage"]

TRACKER_KEY = "usage_tracker"


def _summable(value: Any) -> bool:
    # Flags such as ``is_byok`` are bools: adding them would make a meaningless tally.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _merge(first: dict[str, Any] | None, second: dict[str, Any] | None) -> dict[str, Any]:
    if not first:
        return dict(second or {})
    if not second:
        return dict(first)
    merged = dict(first)
    for key, value in second.items():
        mine = merged.get(key)
        if isinstance(value, dict) or isinstance(mine, dict):
            merged[key] = _merge(mine, value)
        elif mine is None:
            if value is not None:
                merged[key] = value
        elif _summable(mine) and _summable(value):
            merged[key] = mine + value
    return merged


class UsageTracker:
    """The usage entries of the calls made inside one ``track_usage()`` block."""

    def __init__(self) -> None:
        self.usage_data: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        if usage_entry:
            self.usage_data[lm].append(dict(usage_entry))

    def get_total_tokens(self) -> dict[str, dict[str, Any]]:
        totals: dict[str, dict[str, Any]] = {}
        for lm, entries in self.usage_data.items():
            total: dict[str, Any] = {}
            for entry in entries:
                total = _merge(total, entry)
            totals[lm] = total
        return totals


# DSPy's entries carry the providers' token details; dspyq's Usage has none, so an entry
# says so with the value DSPy reports when a provider gives none.
_DETAIL_KEYS = ("prompt_tokens_details", "completion_tokens_details")


def record_usage(model: str, usage: dict[str, Any]) -> None:
    """Add one call's usage to the tracker in effect here, if any."""
    tracker = setting(TRACKER_KEY)
    if tracker is not None:
        tracker.add_usage(model, {**dict.fromkeys(_DETAIL_KEYS), **usage})


@contextmanager
def track_usage() -> Iterator[UsageTracker]:
    """Track the usage of every LM call made in this block (this thread or task)."""
    tracker = UsageTracker()
    parent = setting(TRACKER_KEY)
    with context(**{TRACKER_KEY: tracker}):
        try:
            yield tracker
        finally:
            if parent is not None:
                for lm, entries in tracker.usage_data.items():
                    parent.usage_data[lm].extend(entries)
