"""The write-behind L3 layer over a real SQLite cache table."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from dspyq.lm.request import LMResponse
from dspyq.lm.write_behind import WriteBehindCache
from dspyq.store import SQLCache, init_db, make_engine
from dspyq.store.models import CacheEntry
from dspyq.workers.runtime import SQLResponseCache


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'cache.db'}")
    init_db(engine)
    return engine


def _stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(CacheEntry)).scalar_one())


def _response(text: str) -> LMResponse:
    return LMResponse(outputs=[text], model="m")


def test_queued_entries_are_read_before_they_are_stored(engine: Engine) -> None:
    cache = WriteBehindCache(SQLResponseCache(SQLCache(engine)), flush_interval=60)
    try:
        cache.put("k", _response("a"))
        assert _stored(engine) == 0  # nothing written yet
        got = cache.get("k")
        assert got is not None and got.outputs == ["a"]
    finally:
        cache.close()
    assert _stored(engine) == 1  # close stores what was queued


def test_the_writer_thread_stores_a_batch_in_one_go(engine: Engine) -> None:
    layer = SQLResponseCache(SQLCache(engine))
    cache = WriteBehindCache(layer, flush_interval=0.02)
    try:
        for i in range(50):
            cache.put(f"k{i}", _response(str(i)))
        deadline = time.monotonic() + 5
        while _stored(engine) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _stored(engine) == 50
        stored = layer.get("k7")  # read straight from SQL, not from the queue
        assert stored is not None and stored.outputs == ["7"]
    finally:
        cache.close()


def test_delete_forgets_queued_and_stored_entries(engine: Engine) -> None:
    cache = WriteBehindCache(SQLResponseCache(SQLCache(engine)), flush_interval=60)
    try:
        cache.put("stored", _response("s"))
        cache.flush()
        cache.put("queued", _response("q"))
        assert cache.delete("queued") is True
        assert cache.delete("stored") is True
        assert cache.delete("never") is False
        assert cache.get("queued") is None and cache.get("stored") is None
    finally:
        cache.close()
    assert _stored(engine) == 0


def test_a_failing_store_drops_the_batch_with_a_warning(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    cache = WriteBehindCache(SQLResponseCache(SQLCache(engine)), flush_interval=60)
    engine.dispose()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE cache_entries")
    cache.put("k", _response("a"))
    with caplog.at_level(logging.WARNING, logger="dspyq.lm.write_behind"):
        cache.flush()  # must not raise: a cache write is never worth failing a call
    assert "could not store 1 cache entries" in caplog.text
    cache.close()


class _Covered:
    """An L2 coverage that always holds everything (SQL reads are skipped)."""

    def covers(self) -> bool:
        return True


def test_a_queued_key_is_never_said_to_be_skipped(engine: Engine) -> None:
    layer = SQLResponseCache(SQLCache(engine), coverage=_Covered())  # type: ignore[arg-type]
    cache = WriteBehindCache(layer, flush_interval=60)
    try:
        cache.put("queued", _response("q"))
        assert not cache.skips_read("queued")  # only the queue has it: it must be read
        assert cache.skips_read("other")
        layer.coverage = None
        assert not cache.skips_read("other")  # SQL is read again: it may answer
    finally:
        cache.close()
