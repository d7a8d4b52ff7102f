"""Alias changes announced over Redis pub/sub, so running workers hear of them at once.

Messages go to ``<key_prefix>:aliases`` as JSON :class:`AliasMessage`: ``prepare`` when
a deployment is about to move an alias (a worker may load the new version ahead of
traffic), ``moved`` once the move is committed in SQL. SQL stays the source of truth: a
subscriber that misses a message catches up by re-reading the alias rows
(:class:`~dspyq.deploy.cache.ProgramCache` does so periodically).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from dspyq.resilience.redis_client import redis_errors

if TYPE_CHECKING:
    from redis import Redis

    from dspyq.store.models import AliasRecord

__all__ = ["AliasAnnouncer", "AliasMessage", "alias_channel", "parse_alias_message"]


def alias_channel(key_prefix: str) -> str:
    """The pub/sub channel of alias changes under ``key_prefix``."""
    return f"{key_prefix}:aliases"


class AliasMessage(BaseModel):
    """One announcement: which alias, where it points (or is about to), and why."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event: Literal["prepare", "moved"]
    name: str
    alias: str
    version: int
    canary_version: int | None = None
    canary_fraction: float | None = None
    revision: int | None = None
    deployment_id: str


def parse_alias_message(raw: bytes | str) -> AliasMessage | None:
    """The message in ``raw``, or None when it is not one (a foreign publisher)."""
    try:
        return AliasMessage.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


class AliasAnnouncer:
    """Publishes alias changes on the deployment's channel."""

    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self.redis = redis
        self.channel = alias_channel(key_prefix)

    def moved(self, row: AliasRecord) -> int:
        """Announce that ``row`` is the alias's committed target now."""
        fields = row.model_dump(
            include={"name", "alias", "version", "canary_version", "canary_fraction", "revision"}
        )
        return self.publish(
            AliasMessage(event="moved", deployment_id=str(row.deployment_id), **fields)
        )

    def publish(self, message: AliasMessage) -> int:
        """Send ``message``; returns how many subscribers received it."""
        with redis_errors("announce an alias change", channel=self.channel):
            return int(self.redis.publish(self.channel, message.model_dump_json()))
