"""The Redis client dspyq builds, against a real Redis: its pool serves more calls at once
than redis-py's default allows, and a dead Redis is mapped to a dspyq error."""

from __future__ import annotations

import threading

import pytest
import redis
from private_redis import free_port

from dspyq.errors import RedisUnavailableError
from dspyq.resilience.redis_client import redis_errors, redis_from_url

pytestmark = pytest.mark.integration


def test_an_unreachable_redis_is_a_redis_unavailable_error() -> None:
    client = redis_from_url(f"redis://127.0.0.1:{free_port()}/0", check=False, retries=0)
    pipe = client.pipeline(transaction=False)
    pipe.get("k")
    with pytest.raises(RedisUnavailableError), redis_errors("test"):
        pipe.execute()


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
