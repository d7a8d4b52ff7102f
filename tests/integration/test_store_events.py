"""The event store: the trace of a job, deduplicated, ordered and size-capped."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine

from dspyq.events import DEFAULT_MAX_DATA_BYTES, TRUNCATION_KEY, Event
from dspyq.store import EventStore

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def _event(event_type: str, correlation_id: str | None = "req_abc123", **fields: Any) -> Event:
    return Event(event_type=event_type, correlation_id=correlation_id, **fields)


def test_appended_events_come_back_whole(store_engine: Engine) -> None:
    store = EventStore(store_engine)
    start = _event(
        "module_execution_start",
        parent_id="task-0",
        data={
            "module_id": "cot_1234",
            "module_type": "chain_of_thought",
            "signature": "question -> answer",
            "input_data": {"question": "What is the capital of France?"},
        },
    )
    assert store.append(start) == 1
    (stored,) = store.by_correlation("req_abc123")
    assert stored == start
    assert stored.node == socket.gethostname()
    assert stored.pid == os.getpid()
    assert stored.timestamp.tzinfo is UTC


def test_append_is_idempotent_by_event_id(store_engine: Engine) -> None:
    store = EventStore(store_engine)
    first, second = _event("lm_request"), _event("lm_request")
    assert store.append([first, first, second]) == 2
    assert store.append([second, first]) == 0
    redelivered = first.model_copy(update={"data": {"changed": True}})
    assert store.append(redelivered) == 0
    assert store.count(correlation_id="req_abc123") == 2
    assert {e.event_id for e in store.by_correlation("req_abc123")} == {
        first.event_id,
        second.event_id,
    }
    assert next(e for e in store.by_correlation("req_abc123") if e == first).data == {}


def test_events_of_a_job_come_in_time_order(store_engine: Engine) -> None:
    store = EventStore(store_engine)
    late = _event("module_execution_complete", timestamp=T0 + timedelta(seconds=2))
    early = _event("module_execution_start", timestamp=T0)
    middle_a = _event("lm_request", timestamp=T0 + timedelta(seconds=1), data={"n": 1})
    middle_b = _event("lm_request", timestamp=T0 + timedelta(seconds=1), data={"n": 2})
    other_job = _event("module_execution_start", correlation_id="req_other", timestamp=T0)
    store.append([late, middle_a])
    store.append([other_job, early, middle_b])

    trace = store.by_correlation("req_abc123")
    assert [e.event_id for e in trace] == [
        early.event_id,
        middle_a.event_id,  # same timestamp: stored first, listed first
        middle_b.event_id,
        late.event_id,
    ]
    assert [e.event_id for e in store.by_correlation("req_abc123", event_type="lm_request")] == [
        middle_a.event_id,
        middle_b.event_id,
    ]
    assert store.by_correlation("req_missing") == []


def test_timestamps_from_other_zones_are_stored_as_the_same_instant(store_engine: Engine) -> None:
    store = EventStore(store_engine)
    paris = timezone(timedelta(hours=2))
    event = _event("module_execution_start", timestamp=datetime(2025, 6, 1, 14, 30, tzinfo=paris))
    store.append(event)
    (stored,) = store.by_correlation("req_abc123")
    assert stored.timestamp == datetime(2025, 6, 1, 12, 30, tzinfo=UTC)
    assert stored.timestamp.tzinfo is UTC


def test_count_filters_by_job_and_type(store_engine: Engine) -> None:
    store = EventStore(store_engine)
    store.append(
        [
            _event("module_execution_start"),
            _event("lm_request"),
            _event("lm_request"),
            _event("lm_request", correlation_id="req_other"),
            _event("optimization_iteration", correlation_id=None),
        ]
    )
    assert store.count() == 5
    assert store.count(correlation_id="req_abc123") == 3
    assert store.count(event_type="lm_request") == 3
    assert store.count(correlation_id="req_abc123", event_type="lm_request") == 2


def test_large_data_is_capped_with_a_truncation_marker(store_engine: Engine) -> None:
    store = EventStore(store_engine, max_data_bytes=8192)
    huge = _event(
        "module_execution_complete",
        data={
            "module_id": "cot_1234",
            "duration_ms": 1234,
            "lm_calls": 1,
            "cost_usd": 0.001,
            "output_data": {"answer": "Paris " * 20_000},
        },
    )
    small = _event("module_execution_start", data={"module_id": "cot_1234"})
    store.append([huge, small])

    stored_huge, stored_small = sorted(
        store.by_correlation("req_abc123"), key=lambda e: e.event_id != huge.event_id
    )
    assert stored_huge.truncated is True
    size = len(json.dumps(stored_huge.data, ensure_ascii=False).encode("utf-8"))
    assert size <= 8192
    assert {k: stored_huge.data[k] for k in ("module_id", "duration_ms", "lm_calls")} == {
        "module_id": "cot_1234",
        "duration_ms": 1234,
        "lm_calls": 1,
    }
    marker = stored_huge.data[TRUNCATION_KEY]
    assert marker["dropped_keys"] == ["output_data"]
    assert marker["original_bytes"] > 100_000
    assert marker["preview"].startswith('{"output_data": {"answer": "Paris Paris')
    assert stored_small == small
    assert stored_small.truncated is False


def test_default_cap_is_64_kib(store_engine: Engine) -> None:
    store = EventStore(store_engine)
    fits = _event("lm_request", data={"text": "x" * (DEFAULT_MAX_DATA_BYTES - 100)})
    too_big = _event("lm_request", data={"text": "x" * (DEFAULT_MAX_DATA_BYTES + 1)})
    store.append([fits, too_big])
    by_id = {e.event_id: e for e in store.by_correlation("req_abc123")}
    assert by_id[fits.event_id].truncated is False
    assert by_id[fits.event_id].data == fits.data
    assert by_id[too_big.event_id].truncated is True


def test_data_round_trips_as_json(store_engine: Engine) -> None:
    store = EventStore(store_engine)
    data = {
        "unicode": "東京 — naïve 🚀",
        "nested": {"scores": [0.85, 1, None, True], "empty": {}},
        "metric": "accuracy",
        "when": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    event = _event("optimization_iteration", data=data)
    store.append(event)
    (stored,) = store.by_correlation("req_abc123")
    assert stored.data == {**data, "when": "2025-01-02T03:04:05Z"}


def test_many_events_in_one_append(store_engine: Engine) -> None:
    store = EventStore(store_engine)
    events = [
        _event("lm_request", timestamp=T0 + timedelta(milliseconds=n), data={"n": n})
        for n in range(1234)
    ]
    assert store.append(events) == 1234
    assert store.append(iter(events)) == 0
    assert [e.data["n"] for e in store.by_correlation("req_abc123")] == list(range(1234))


def test_cap_below_the_minimum_is_refused(store_engine: Engine) -> None:
    with pytest.raises(ValueError, match="at least"):
        EventStore(store_engine, max_data_bytes=100)
