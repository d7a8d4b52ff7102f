"""Fixtures giving each Redis test a real server and a key prefix of its own.

The server is found at ``DSPYQ_TEST_REDIS_URL`` (default: the local one on 6379); when
none answers there, one is started for the test module and stopped after it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from dspyq.resilience.redis_client import redis_from_url
from dspyq.workers.embedded_redis import ensure_redis

REDIS_URL_ENV = "DSPYQ_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Redis server that answers for the whole test module."""
    url = os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS_URL)
    server = ensure_redis(url, tmp_path_factory.mktemp("redis"))
    yield url
    if server is not None:
        server.stop()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client built the way the library builds its own, closed after the test."""
    conn = redis_from_url(redis_url)
    yield conn
    conn.close()
