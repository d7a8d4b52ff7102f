"""The event hook and the ``lm_request`` event every LM call reports."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dspyq.core import observe
from dspyq.core.context import context
from dspyq.errors import BadRequestError
from dspyq.events import Event
from dspyq.lm import LM, LRUCache
from dspyq.lm.cache import set_default_cache
from dspyq.lm.observe import LM_REQUEST, prompt_hash
from dspyq.testing import FakeLMServer

KEY = "sk-never-in-an-event-4321"


@pytest.fixture
def private_cache() -> Iterator[LRUCache]:
    cache = LRUCache()
    set_default_cache(cache)
    yield cache
    set_default_cache(None)


def _lm(server: FakeLMServer, **kwargs: Any) -> LM:
    options: dict[str, Any] = {"api_base": server.openai_base, "api_key": KEY, "cache": False}
    options.update(kwargs)
    return LM("openai/gpt-4o-mini", **options)


def test_emit_with_no_sink_does_nothing() -> None:
    assert not observe.has_sinks()
    assert observe.emit("anything", {"a": 1}) is None


def test_events_carry_the_correlation_and_parent_id_of_the_context() -> None:
    with observe.capture() as events, context(correlation_id="job-1", parent_id="hop-0"):
        emitted = observe.emit("module_execution_start", {"module": "qa"})
    assert emitted is not None
    assert events == [emitted]
    assert (emitted.correlation_id, emitted.parent_id) == ("job-1", "hop-0")
    assert emitted.data == {"module": "qa"}


def test_process_wide_sinks_get_events_from_every_thread_until_removed() -> None:
    received: list[Event] = []
    remove = observe.add_sink(received.append)
    try:
        thread = threading.Thread(target=observe.emit, args=("from_thread", {}))
        thread.start()
        thread.join()
        observe.emit("from_main", {})
    finally:
        remove()
    observe.emit("after_removal", {})
    assert sorted(e.event_type for e in received) == ["from_main", "from_thread"]
    assert not observe.has_sinks()


def test_a_failing_sink_is_logged_and_the_others_still_receive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    remove = observe.add_sink(broken)
    try:
        with observe.capture() as events, caplog.at_level(logging.ERROR):
            observe.emit("still_delivered", {})
    finally:
        remove()
    assert [e.event_type for e in events] == ["still_delivered"]
    assert "sink down" in caplog.text


def test_an_lm_call_reports_usage_cost_and_a_prompt_hash_but_no_secret(
    fake_lm: FakeLMServer,
) -> None:
    lm = _lm(fake_lm, prices=(1.0, 2.0))
    with observe.capture() as events, context(correlation_id="job-7"):
        lm("What is the capital of France?")
    (event,) = events
    data = event.data
    entry = lm.history[-1]
    assert event.event_type == LM_REQUEST
    assert event.correlation_id == "job-7"
    assert data["request_id"] == entry["uuid"]
    assert data["provider"] == "openai"
    assert data["model"] == "openai/gpt-4o-mini"
    assert data["input_tokens"] == entry["usage"]["prompt_tokens"] > 0
    assert data["output_tokens"] == entry["usage"]["completion_tokens"] > 0
    assert data["cost_usd"] == pytest.approx(entry["cost"]) and data["cost_usd"] > 0
    assert data["duration_ms"] == entry["duration_ms"]
    assert data["cache_hit"] is False
    assert data["status"] == "ok"
    assert data["prompt_hash"] == prompt_hash(entry["messages"])
    text = event.model_dump_json()
    assert KEY not in text
    assert "capital of France" not in text
    assert "authorization" not in text.lower()


def test_a_cached_answer_is_reported_as_a_free_cache_hit(
    fake_lm: FakeLMServer, private_cache: LRUCache
) -> None:
    lm = _lm(fake_lm, cache=True)
    with observe.capture() as events:
        lm("twice")
        lm("twice")
    first, second = (e.data for e in events)
    assert first["cache_hit"] is False
    assert second["cache_hit"] is True
    assert (second["input_tokens"], second["output_tokens"], second["cost_usd"]) == (0, 0, 0.0)
    assert second["prompt_hash"] == first["prompt_hash"]
    assert len(fake_lm.requests) == 1


def test_a_failed_call_is_reported_with_the_error_type(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, 400, message="bad things")
    lm = _lm(fake_lm)
    with observe.capture() as events, pytest.raises(BadRequestError):
        lm("refused")
    (event,) = events
    assert event.data["status"] == "BadRequestError"
    assert event.data["error_code"] == BadRequestError.code
    assert "bad things" in event.data["error"]
    assert event.data["input_tokens"] == 0
    assert KEY not in json.dumps(event.data)


def test_a_stream_is_reported_once_at_its_end(fake_lm: FakeLMServer) -> None:
    lm = _lm(fake_lm)
    with observe.capture() as events:
        chunks = list(lm.stream("stream it"))
    assert "".join(chunks) == "fake answer: stream it"
    (event,) = events
    assert event.data["stream"] is True
    assert event.data["status"] == "ok"
