"""Build the Redis client the rate limiter and circuit breakers share, and map its errors.

redis-py's defaults suit a cache, not a limiter in the path of every LM call: here a
dead Redis fails within seconds (short connect and read timeouts), a dropped
connection is retried twice with jittered backoff, and idle pooled connections are
health-checked. Timeouts are deliberately not retried: a timed-out script may have
run, and running it again would count a request or a failure twice.

Redis errors never reach users raw: :func:`redis_errors` turns them into
:class:`~dspyq.errors.RedisUnavailableError` (retry later),
:class:`~dspyq.errors.ConfigurationError` (wrong password or URL) or
:class:`~dspyq.errors.RedisOperationError` (Redis refused the command).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from dspyq.errors import ConfigurationError, RedisOperationError, RedisUnavailableError
from dspyq.sentinel_url import is_sentinel_url, parse_sentinel_url
from dspyq.settings import get_settings

__all__ = [
    "MAX_CONNECTIONS",
    "async_redis_from_url",
    "redacted_url",
    "redis_errors",
    "redis_from_url",
]


def redacted_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for messages and logs."""
    if ";" in url:  # several sentinel:// addresses
        return ";".join(redacted_url(chunk) for chunk in url.split(";"))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@contextmanager
def redis_errors(operation: str, url: str | None = None, **context: Any) -> Iterator[None]:
    """Run a block of Redis calls, mapping redis-py's exceptions to dspyq errors.

    ``operation`` names what was attempted ("rate limiter acquire"), so the message
    tells the user which part of dspyq needed Redis.
    """
    ctx: dict[str, Any] = {"operation": operation, **context}
    if url is not None:
        ctx["redis_url"] = redacted_url(url)
    try:
        yield
    except (redis.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
        raise ConfigurationError(
            f"Redis refused dspyq's credentials during {operation}: {exc}. "
            "Check the user and password in DSPYQ_REDIS_URL.",
            context=ctx,
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as exc:
        raise RedisUnavailableError(
            f"Redis is unreachable during {operation} ({type(exc).__name__}: {exc}). "
            "Start Redis or point DSPYQ_REDIS_URL at a running one.",
            context=ctx,
        ) from exc
    except redis.RedisError as exc:
        raise RedisOperationError(
            f"Redis refused {operation}: {type(exc).__name__}: {exc}",
            context=ctx,
        ) from exc


MAX_CONNECTIONS = 10_000
"""Connections a client's pool may open. redis-py 8 allows 100 and then raises rather
than waits; a worker of concurrency 200 can have more calls to Redis at once."""


def redis_from_url(
    url: str | None = None,
    *,
    socket_timeout: float = 5.0,
    socket_connect_timeout: float = 2.0,
    health_check_interval: int = 30,
    retries: int = 2,
    max_connections: int = MAX_CONNECTIONS,
    check: bool = True,
    **kwargs: Any,
) -> redis.Redis:
    """A ``redis.Redis`` for ``url`` (default: the settings' Redis URL) with sane timeouts.

    With ``check`` the server is pinged once, so a wrong URL fails here with an
    actionable :class:`~dspyq.errors.RedisUnavailableError` instead of on the first
    LM call. Extra ``kwargs`` go to ``redis.Redis.from_url``.
    """
    target = url or get_settings().effective_redis_url
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "health_check_interval": health_check_interval,
        "max_connections": max_connections,
        # A dropped connection is retried; through Sentinel that also covers a failover
        # (the connection asks the sentinels for the new master before it retries).
        "retry": Retry(
            ExponentialWithJitterBackoff(base=0.05, cap=1.0),
            retries,
            supported_errors=(redis.ConnectionError,),
        ),
        **kwargs,
    }
    with redis_errors("connecting", url=target):
        if is_sentinel_url(target):
            client = _sentinel_master(target, redis.sentinel.Sentinel, redis.Redis, options)
        else:
            client = _plain(target, redis.Redis, options)
        if check:
            client.ping()
    return client


def async_redis_from_url(url: str, **kwargs: Any) -> redis.asyncio.Redis:
    """The asyncio twin of :func:`redis_from_url` (not pinged), for ``sentinel://`` too."""
    options: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0, **kwargs}
    with redis_errors("connecting", url=url):
        if is_sentinel_url(url):
            return _sentinel_master(
                url, redis.asyncio.sentinel.Sentinel, redis.asyncio.Redis, options
            )
        return _plain(url, redis.asyncio.Redis, options)


def _plain(url: str, cls: Any, options: dict[str, Any]) -> Any:
    try:
        return cls.from_url(url, **options)
    except ValueError as exc:
        raise ConfigurationError(
            f"{redacted_url(url)!r} is not a Redis URL: {exc}. Use redis://host:port/db "
            "(rediss:// for TLS, or sentinel://host:26379;sentinel://host2:26379/0"
            "?master_name=NAME through Sentinel).",
            context={"redis_url": redacted_url(url)},
        ) from exc


def _sentinel_master(url: str, sentinel_cls: Any, redis_cls: Any, options: dict[str, Any]) -> Any:
    """A client of the master the sentinels of ``url`` name now, and after a failover."""
    target = parse_sentinel_url(url)
    timeouts = {
        key: options[key] for key in ("socket_timeout", "socket_connect_timeout") if key in options
    }
    sentinels = sentinel_cls(target.sentinels, sentinel_kwargs=timeouts)
    login = {"username": target.username, "password": target.password}
    return sentinels.master_for(
        target.master_name,
        redis_class=redis_cls,
        db=target.db,
        **{key: value for key, value in login.items() if value is not None},
        **options,
    )
