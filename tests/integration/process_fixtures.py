"""Fixtures for tests that start dspyq as real processes (CLI, workers, the dev stack).

Each such test module names its own Redis database in a module constant ``BROKER_DB``,
so modules running at once never share a broker's queues.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from redis_fixtures import DEFAULT_REDIS_URL, REDIS_URL_ENV

from dspyq.workers.embedded_redis import ensure_redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def broker_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Redis database of this module's own (its ``BROKER_DB``), emptied first."""
    database = getattr(request.module, "BROKER_DB", None)
    if not isinstance(database, int):
        pytest.fail(f"{request.module.__name__} must set BROKER_DB to use the broker_url fixture")
    base = urlsplit(os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS_URL))
    url = urlunsplit(base._replace(path=f"/{database}"))
    server = ensure_redis(url, tmp_path_factory.mktemp("redis"))
    redis.Redis.from_url(url).flushdb()
    yield url
    if server is not None:
        server.stop()
