"""The event record every part of dspyq emits, in its cross-process JSON form.

An :class:`Event` mirrors the seed's Foundation event: who emitted it (``node``, ``pid``),
when, what happened (``event_type``, ``data``) and which job it belongs to
(``correlation_id``, with ``parent_id`` linking hops of a chain or iterations of a run).
It is plain pydantic so the core can build events without knowing about SQL; the store
persists them (``dspyq.store.events``).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dspyq.masking import mask

DEFAULT_MAX_DATA_BYTES = 64 * 1024
"""Largest JSON form of ``Event.data`` kept as is; bigger payloads are cut down."""

TRUNCATION_KEY = "_truncated"
"""Key added to a cut-down ``data`` dict, describing what was removed."""

MIN_MAX_DATA_BYTES = 4096
"""Smallest allowed cap: room for the small values and the truncation marker."""

_SMALL_VALUE_BYTES = 1024
_MAX_DROPPED_KEYS = 20
_KEY_PREVIEW_CHARS = 64
_SIZING = json.JSONEncoder(ensure_ascii=False, default=str)
"""Encodes event data to measure it (``json.dumps`` with options builds one per call)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_event_id() -> str:
    return uuid.uuid4().hex


class Event(BaseModel):
    """One thing that happened, tied to a job by its correlation id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(default_factory=_new_event_id, min_length=1, max_length=255)
    event_type: str = Field(min_length=1, max_length=255)
    timestamp: datetime = Field(default_factory=_utcnow)
    node: str = Field(default_factory=socket.gethostname)
    pid: int = Field(default_factory=os.getpid)
    correlation_id: str | None = None
    parent_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    truncated: bool = False

    @field_validator("data")
    @classmethod
    def _masked(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Secrets never reach a record: masked by key (and shape) as the event is built.
        masked: dict[str, Any] = mask(value)
        return masked

    @field_validator("timestamp")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        # Events from several hosts are ordered by timestamp: keep them all in UTC.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def capped(self, max_bytes: int = DEFAULT_MAX_DATA_BYTES) -> Event:
        """This event with ``data`` cut down to ``max_bytes`` of JSON (itself if it fits)."""
        data, truncated = cap_data(self.model_dump(mode="json")["data"], max_bytes)
        if not truncated:
            return self
        return self.model_copy(update={"data": data, "truncated": True})


def cap_data(data: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], bool]:
    """Return ``(data, False)`` if its JSON fits in ``max_bytes``, else a cut-down copy and True.

    The cut-down copy keeps the small top-level values (ids, counts, durations: what
    dashboards query) within half the budget, drops the rest, and adds a ``_truncated``
    entry with the original size, the dropped keys and a JSON ``preview`` of what was
    dropped, so that the whole stays within ``max_bytes``.
    """
    if max_bytes < MIN_MAX_DATA_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_MAX_DATA_BYTES}, got {max_bytes}")
    size = _json_size(data)
    if size <= max_bytes:
        return data, False

    kept: dict[str, Any] = {}
    dropped: dict[str, Any] = {}
    used = 2
    for key, value in data.items():
        item_bytes = _json_size({key: value})
        if item_bytes <= _SMALL_VALUE_BYTES and used + item_bytes <= max_bytes // 2:
            kept[key] = value
            used += item_bytes
        else:
            dropped[key] = value

    marker: dict[str, Any] = {
        "original_bytes": size,
        "max_bytes": max_bytes,
        "dropped_keys": [
            str(key)[:_KEY_PREVIEW_CHARS] for key in list(dropped)[:_MAX_DROPPED_KEYS]
        ],
        "preview": "",
    }
    capped = {**kept, TRUNCATION_KEY: marker}
    preview_text = _SIZING.encode(dropped)
    room = max_bytes - _json_size(capped)
    # Escaping inside a JSON string can grow the preview, so shrink until it fits.
    while room > 0:
        marker["preview"] = _cut_utf8(preview_text, room)
        overflow = _json_size(capped) - max_bytes
        if overflow <= 0:
            break
        room -= overflow
    else:
        marker["preview"] = ""
    return capped, True


def _json_size(value: Any) -> int:
    return len(_SIZING.encode(value).encode("utf-8"))


def _cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form fits in ``max_bytes``."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")
