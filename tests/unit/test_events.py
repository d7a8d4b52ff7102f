"""The Event record: its defaults, its JSON form, and the size cap on its data."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dspyq.events import MIN_MAX_DATA_BYTES, TRUNCATION_KEY, Event, cap_data


def _size(data: dict[str, Any]) -> int:
    return len(json.dumps(data, ensure_ascii=False).encode("utf-8"))


def test_defaults_identify_the_emitter() -> None:
    before = datetime.now(UTC)
    event = Event(event_type="module_execution_start", correlation_id="req_abc123")
    assert len(event.event_id) == 32
    assert event.node == socket.gethostname()
    assert event.pid == os.getpid()
    assert before <= event.timestamp <= datetime.now(UTC)
    assert (event.parent_id, event.data, event.truncated) == (None, {}, False)
    assert Event(event_type="x").event_id != event.event_id


def test_timestamps_are_normalised_to_utc() -> None:
    naive = Event(event_type="x", timestamp=datetime(2025, 1, 1, 12, 0))
    shifted = Event(
        event_type="x", timestamp=datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    )
    assert naive.timestamp == shifted.timestamp == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert shifted.timestamp.tzinfo is UTC


def test_json_form_round_trips() -> None:
    event = Event(
        event_type="lm_request",
        correlation_id="req_abc123",
        parent_id="task-1",
        data={"provider": "openai", "model": "gpt-4", "input_tokens": 150, "cost_usd": 0.002},
    )
    assert Event.model_validate_json(event.model_dump_json()) == event
    assert Event.model_validate(json.loads(event.model_dump_json())) == event


def test_unknown_fields_and_empty_types_are_refused() -> None:
    with pytest.raises(ValidationError):
        Event(event_type="")
    with pytest.raises(ValidationError):
        Event.model_validate({"event_type": "x", "severity": "high"})


def test_small_data_is_left_alone() -> None:
    event = Event(event_type="x", data={"a": 1})
    assert event.capped() is event


def test_capped_keeps_small_values_and_describes_the_rest() -> None:
    event = Event(
        event_type="module_execution_complete",
        data={"module_id": "cot_1", "duration_ms": 12, "output_data": {"answer": "y" * 50_000}},
    )
    capped = event.capped(MIN_MAX_DATA_BYTES)
    assert capped.truncated is True
    assert capped.event_id == event.event_id
    assert capped.data["module_id"] == "cot_1"
    assert capped.data["duration_ms"] == 12
    assert "output_data" not in capped.data
    assert capped.data[TRUNCATION_KEY]["dropped_keys"] == ["output_data"]
    assert _size(capped.data) <= MIN_MAX_DATA_BYTES


@pytest.mark.parametrize(
    "data",
    [
        {"escapes": '"\\' * 40_000},
        {"controls": "\x01\x02" * 20_000},
        {"wide": "東京🚀" * 10_000},
        {f"key-{n}": "v" * 100 for n in range(5_000)},
        {"k" * 10_000: 1},
    ],
    ids=["escapes", "controls", "wide", "many-keys", "huge-key"],
)
def test_capped_data_never_exceeds_the_cap(data: dict[str, Any]) -> None:
    capped, truncated = cap_data(data, MIN_MAX_DATA_BYTES)
    assert truncated is True
    assert _size(capped) <= MIN_MAX_DATA_BYTES


def test_cap_below_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        cap_data({"a": 1}, 10)


# Long strings built by repetition: generating them character by character is slow.
long_texts = st.builds(
    lambda piece, n: piece * n, st.text(min_size=1, max_size=4), st.integers(0, 3000)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | long_texts,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=60, deadline=None)
@given(
    data=st.dictionaries(st.text(max_size=12), json_values, max_size=12),
    max_bytes=st.integers(MIN_MAX_DATA_BYTES, 3 * MIN_MAX_DATA_BYTES),
)
def test_cap_data_fits_or_returns_data_unchanged(data: dict[str, Any], max_bytes: int) -> None:
    capped, truncated = cap_data(data, max_bytes)
    event(f"truncated={truncated}")
    assert _size(capped) <= max_bytes
    assert truncated == (_size(data) > max_bytes)
    if not truncated:
        assert capped is data


def test_notify_recorded_reaches_watchers_but_not_recorders() -> None:
    from dspyq.core import observe
    from dspyq.events import Event

    watched: list[Event] = []
    recorded: list[Event] = []

    class Recorder:
        records_events = True

        def __call__(self, event: Event) -> None:
            recorded.append(event)

    recorder = Recorder()
    remove_watcher = observe.add_sink(watched.append)
    remove_recorder = observe.add_sink(recorder)
    try:
        event = Event(event_type="optimization_iteration", correlation_id="c", data={"score": 1})
        observe.notify_recorded(event)
    finally:
        remove_watcher()
        remove_recorder()
    assert watched == [event]
    assert recorded == []  # its caller stored it already
