"""The Redis client dspyq builds, against a real Redis: its pool serves more calls at once
than redis-py's default allows; ThreadRoundTrips sends commands together on a connection
the thread keeps (replies in order with errors in their places, one connection per
thread closed when the thread ends, a dropped connection retried, a dead Redis mapped)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from private_redis import free_port

from dspyq.errors import RedisUnavailableError
from dspyq.resilience.redis_client import ThreadRoundTrips, redis_errors, redis_from_url

pytestmark = pytest.mark.integration

ECHO = "return {KEYS[1], ARGV[1]}"


@pytest.fixture
def trips(client: redis.Redis) -> Iterator[ThreadRoundTrips]:
    yield ThreadRoundTrips(client)


def test_replies_come_in_order_with_errors_in_their_places(
    client: redis.Redis,
    trips: ThreadRoundTrips,
    prefix: str,
) -> None:
    sha = client.script_load(ECHO)
    client.set(f"{prefix}:a", "1")
    batch = trips.batch()
    batch.get(f"{prefix}:a")
    batch.evalsha("0" * 40, 0)  # a script Redis does not know
    batch.evalsha(sha, 1, f"{prefix}:k", 7)
    batch.get(f"{prefix}:missing")
    replies = batch.execute()
    assert replies[0] == b"1"
    assert isinstance(replies[1], redis.exceptions.NoScriptError)
    assert replies[2] == [f"{prefix}:k".encode(), b"7"]
    assert replies[3] is None
    assert trips.batch().execute() == []  # nothing to send: no round trip


def test_each_thread_keeps_one_connection_outside_the_clients_pool(
    redis_url: str,
    prefix: str,
) -> None:
    # A pool of one: job threads holding its connections would leave none for others.
    client = redis_from_url(redis_url, max_connections=1)
    trips = ThreadRoundTrips(client)
    kept_by_thread: list[Any] = []
    together = threading.Barrier(4)

    def work() -> None:
        kept = []
        for _ in range(3):
            batch = trips.batch()
            batch.get(f"{prefix}:x")
            batch.execute()
            kept.append(trips._local.kept.conn)
            together.wait(5)  # all four threads hold theirs at once
        assert kept[0] is kept[1] is kept[2]
        kept_by_thread.append(kept[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()
    assert len({id(conn) for conn in kept_by_thread}) == 4  # one each, kept throughout
    assert all(conn._sock is None for conn in kept_by_thread)  # closed with their threads
    assert client.get(f"{prefix}:x") is None  # the client's own pool still serves
    assert client.connection_pool._created_connections == 1
    client.close()


def test_a_dropped_connection_is_retried_on_a_new_one(
    client: redis.Redis,
    trips: ThreadRoundTrips,
    prefix: str,
) -> None:
    client.set(f"{prefix}:v", "ok")
    batch = trips.batch()
    batch.get(f"{prefix}:v")
    assert batch.execute() == [b"ok"]
    host, port = trips._local.kept.conn._sock.getsockname()[:2]
    client.client_kill(f"{host}:{port}")  # as a Redis restart or a timeout would
    batch = trips.batch()
    batch.get(f"{prefix}:v")
    assert batch.execute() == [b"ok"]


def test_an_unreachable_redis_is_a_redis_unavailable_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    trips = ThreadRoundTrips(redis_from_url(url, check=False, retries=0))
    batch = trips.batch()
    batch.get("k")
    with pytest.raises(RedisUnavailableError), redis_errors("test"):
        batch.execute()


def test_the_client_serves_more_calls_at_once_than_redis_pys_default_pool(
    redis_url: str, prefix: str
) -> None:
    client = redis_from_url(redis_url)
    assert redis.Redis.from_url(redis_url).connection_pool.max_connections < 150
    errors: list[BaseException] = []
    together = threading.Barrier(150)

    def wait_on_redis() -> None:
        try:
            together.wait(10)
            client.blpop([f"{prefix}:never"], timeout=0.5)  # holds a connection meanwhile
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wait_on_redis) for _ in range(150)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert client.connection_pool._created_connections > 100
    client.close()
