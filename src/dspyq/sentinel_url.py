"""Redis found through Sentinel: one URL form for dspyq, Celery's results and kombu's broker.

The form is kombu's and Celery's (``sentinel://`` addresses joined by ``;``, the database
and password on the first), plus the master's name as a query parameter, which neither
reads from the URL, so dspyq takes it off and hands it to them as the transport option
``master_name``::

    sentinel://:PASSWORD@host1:26379/0;sentinel://host2:26379;sentinel://host3:26379?master_name=mymaster

The password is the master's (``requirepass``), not the sentinels'.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from dspyq.errors import ConfigurationError

__all__ = [
    "SentinelTarget",
    "celery_url",
    "is_sentinel_url",
    "parse_sentinel_url",
    "split_master_name",
]

DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``sentinel://`` URL names: the sentinels, the master's name, its db and login."""

    sentinels: list[tuple[str, int]]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() == "sentinel"


def split_master_name(url: str) -> tuple[str, str]:
    """``url`` without its ``?master_name=`` part, and that name (what Celery and kombu take)."""
    base, _, query = url.partition("?")
    names = parse_qs(query).get("master_name") or []
    if not names or not names[0]:
        raise ConfigurationError(
            "a sentinel:// Redis URL must name the master Sentinel watches: add "
            "?master_name=NAME (e.g. sentinel://h1:26379;sentinel://h2:26379/0?master_name=mymaster)",
            context={"url": _without_password(base)},
        )
    return base, names[0]


def celery_url(url: str) -> tuple[str, dict[str, str]]:
    """``url`` as Celery and kombu take it, and the transport options it needs with it."""
    if not is_sentinel_url(url):
        return url, {}
    base, master_name = split_master_name(url)
    return base, {"master_name": master_name}


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The sentinels, master name, db and login of a ``sentinel://`` URL."""
    base, master_name = split_master_name(url)
    sentinels: list[tuple[str, int]] = []
    db, username, password = 0, None, None
    for index, chunk in enumerate(part for part in base.split(";") if part.strip()):
        parts = urlsplit(chunk.strip())
        if parts.scheme.lower() != "sentinel" or not parts.hostname:
            raise ConfigurationError(
                f"{_without_password(chunk)!r} is not a sentinel://host:port address; join "
                "several with ';'",
                context={"url": _without_password(base)},
            )
        try:
            sentinels.append((parts.hostname, parts.port or DEFAULT_SENTINEL_PORT))
            path = parts.path.strip("/")
            if index == 0:
                db = int(path) if path else 0
        except ValueError as exc:
            raise ConfigurationError(
                f"bad port or database in {_without_password(chunk)!r}: {exc}",
                context={"url": _without_password(base)},
            ) from exc
        if index == 0:
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password) if parts.password else None
    if not sentinels:
        raise ConfigurationError("a sentinel:// URL needs at least one sentinel address")
    return SentinelTarget(sentinels, master_name, db, username, password)


def _without_password(url: str) -> str:
    from dspyq.resilience.redis_client import redacted_url

    return redacted_url(url)
