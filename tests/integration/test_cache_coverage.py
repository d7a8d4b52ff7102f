"""When an L2 miss skips the SQL read: only while Redis has kept everything it was given.

A Redis server of the test's own (to restart it and to make it evict), the store on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from private_redis import PrivateRedis
from sqlalchemy import Engine

from dspyq.lm.cache_coverage import L2Coverage
from dspyq.store import SQLCache

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    # Kept on disk across a restart, as a production Redis with an append-only file.
    broker = PrivateRedis(
        tmp_path / "redis", "--appendonly", "yes", "--maxmemory", "4mb",
        "--maxmemory-policy", "allkeys-lru",
    ).start()  # fmt: skip
    try:
        yield broker
    finally:
        broker.stop()


def _coverage(server: PrivateRedis, sql: SQLCache) -> L2Coverage:
    client = redis.Redis.from_url(server.url)
    return L2Coverage(client, "cov", lambda: sql.latest_expiry("lm:"), check_every=0.0, margin=0.0)


@pytest.fixture
def covered(server: PrivateRedis, store_engine: Engine) -> tuple[SQLCache, L2Coverage]:
    """A coverage marked while SQL was empty, then an answer cached (in both layers)."""
    sql = SQLCache(store_engine)
    coverage = _coverage(server, sql)
    assert coverage.covers()  # nothing in SQL that Redis could lack
    sql.put("lm:answer", {"text": "A"}, ttl=3600)
    return sql, coverage


def test_a_restarted_redis_means_sql_is_read_again(
    server: PrivateRedis, covered: tuple[SQLCache, L2Coverage]
) -> None:
    sql, coverage = covered
    assert coverage.covers()  # the mark stands: Redis has kept everything since
    server.restart()  # comes back from its file: the mark is back, but it is a new server
    assert not coverage.covers()  # SQL may hold what the old one had and lost: read it
    horizon = float(coverage.redis.get(coverage.marker).split()[0])
    assert horizon >= (sql.latest_expiry("lm:") or 0)


def test_keys_evicted_by_redis_mean_sql_is_read_again(
    server: PrivateRedis, covered: tuple[SQLCache, L2Coverage]
) -> None:
    _, coverage = covered
    filler = redis.Redis.from_url(server.url)
    for n in range(200):  # 10 MB into a 4 MB Redis
        filler.set(f"filler:{n}", b"x" * 50_000)
    assert int(filler.info()["evicted_keys"]) > 0
    assert not coverage.covers()


def test_a_failed_l2_write_means_sql_is_read_again(
    covered: tuple[SQLCache, L2Coverage],
) -> None:
    _, coverage = covered  # ...but the answer's Redis write failed
    coverage.lost_writes()
    assert not coverage.covers()
    assert coverage.redis.exists(coverage.marker)  # replaced, with the entry's expiry


def test_entries_that_never_expire_are_always_read_from_sql(
    server: PrivateRedis, store_engine: Engine
) -> None:
    sql = SQLCache(store_engine)
    sql.put("lm:forever", {"text": "A"}, ttl=None)
    assert sql.latest_expiry("lm:") == sql.latest_expiry() == math.inf
    assert sql.latest_expiry("other:") is None
    coverage = _coverage(server, sql)
    assert not coverage.covers()
