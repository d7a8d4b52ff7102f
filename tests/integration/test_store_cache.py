"""The L3 SQL cache: JSON values with expiry, shared by every process on the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from dspyq.errors import StoreError
from dspyq.store import SQLCache, make_engine

pytestmark = pytest.mark.integration


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


RESPONSE: dict[str, Any] = {
    "outputs": ["[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"],
    "usage": {"prompt_tokens": 150, "completion_tokens": 75},
    "model": "openai/gpt-4o-mini",
}


def test_put_then_get_returns_the_value(store_engine: Engine) -> None:
    cache = SQLCache(store_engine)
    cache.put("k1", RESPONSE, ttl=3600)
    assert cache.get("k1") == RESPONSE
    assert cache.get("absent") is None


def test_entries_expire_after_their_ttl(store_engine: Engine) -> None:
    clock = Clock()
    cache = SQLCache(store_engine, clock=clock)
    cache.put("short", RESPONSE, ttl=60)
    cache.put("forever", [1, 2, 3])
    clock.advance(59)
    assert cache.get("short") == RESPONSE
    clock.advance(2)
    assert cache.get("short") is None
    assert cache.get("forever") == [1, 2, 3]


def test_put_replaces_value_and_expiry(store_engine: Engine) -> None:
    clock = Clock()
    cache = SQLCache(store_engine, clock=clock)
    cache.put("k", {"v": 1}, ttl=10)
    clock.advance(5)
    cache.put("k", {"v": 2}, ttl=10)
    clock.advance(8)
    assert cache.get("k") == {"v": 2}


def test_purge_and_delete(store_engine: Engine) -> None:
    clock = Clock()
    cache = SQLCache(store_engine, clock=clock)
    cache.put("old-1", "a", ttl=1)
    cache.put("old-2", "b", ttl=1)
    cache.put("fresh", "c", ttl=100)
    cache.put("forever", "d")
    clock.advance(10)
    assert cache.purge_expired() == 2
    assert cache.purge_expired() == 0
    assert cache.delete("fresh") is True
    assert cache.delete("fresh") is False
    assert cache.get("forever") == "d"


def test_a_second_engine_sees_the_same_entries(store_engine: Engine) -> None:
    other = make_engine(store_engine.url.render_as_string(hide_password=False))
    try:
        SQLCache(store_engine).put("shared", {"answer": "Paris"}, ttl=60)
        assert SQLCache(other).get("shared") == {"answer": "Paris"}
    finally:
        other.dispose()


@pytest.mark.parametrize("value", [0, False, "", [], {}, 1.5, "東京", {"a": [None]}])
def test_falsy_and_nested_values_round_trip(store_engine: Engine, value: Any) -> None:
    cache = SQLCache(store_engine)
    cache.put("k", value)
    assert cache.get("k") == value


def test_none_and_non_json_values_are_refused(store_engine: Engine) -> None:
    cache = SQLCache(store_engine)
    with pytest.raises(StoreError, match="None"):
        cache.put("k", None)
    with pytest.raises(StoreError, match="JSON"):
        cache.put("k", {"x": {1, 2}})
    with pytest.raises(StoreError, match="JSON"):
        cache.put("k", float("nan"))
    assert cache.get("k") is None
