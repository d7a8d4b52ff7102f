"""Settings changed while workers run: ``dspyq config set providers.openai.rate_limit 300/m``.

Overrides live in Redis under the key prefix, so a worker that starts later gets them
too:

- ``<prefix>:config:overrides``: a hash of dotted key -> JSON value;
- ``<prefix>:config:version``: a counter bumped by every change;
- ``<prefix>:config:changes``: the pub/sub channel a change is announced on.

:class:`LiveConfigStore` validates a change against the settings it would produce
(:mod:`dspyq.settings_live`) before storing anything. Every worker process runs a
:class:`LiveConfigListener`: a daemon thread subscribed to the channel that, on each
announcement, reads the whole hash, rebuilds its settings as *its own environment plus
the overrides*, and writes the result into the process's :class:`~dspyq.settings.Settings`
object in place. Code that reads settings per call (the LM: timeouts, retries,
redaction, cache switch; the optimizers' defaults) sees the new values at once with no
extra round trip; the runtime's ``on_change`` hook rebuilds what was built from the old
values (rate limiters, breakers, cache TTLs). A lost connection is retried, and the hash
is re-read on every (re)subscription, so a missed announcement is caught up.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dspyq.core import observe
from dspyq.core.context import context
from dspyq.errors import ConfigurationError
from dspyq.resilience.redis_client import redis_errors
from dspyq.settings import Settings
from dspyq.settings_live import (
    CONFIG_APPLIED,
    CONFIG_REJECTED,
    check_key,
    validated_override,
    with_overrides,
)

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["LiveConfigListener", "LiveConfigStore", "config_correlation_id"]

logger = logging.getLogger(__name__)

RESUBSCRIBE_DELAY = 1.0
"""Seconds between attempts to get the subscription back after Redis went away."""


def config_correlation_id(version: int) -> str:
    """The correlation id grouping a change's ``config_changed`` and ``config_applied`` events."""
    return f"config-{version}"


class LiveConfigStore:
    """The overrides in Redis: read, validated change, removal, announcement."""

    def __init__(self, redis: Redis, key_prefix: str = "dspyq") -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self.overrides_key = f"{key_prefix}:config:overrides"
        self.version_key = f"{key_prefix}:config:version"
        self.channel = f"{key_prefix}:config:changes"

    def overrides(self) -> dict[str, Any]:
        """Every override: dotted key -> value."""
        with redis_errors("read the live settings", config=self.overrides_key):
            raw = self.redis.hgetall(self.overrides_key)
        return {_text(k): json.loads(v) for k, v in raw.items()}

    def version(self) -> int:
        with redis_errors("read the live settings version", config=self.version_key):
            value = self.redis.get(self.version_key)
        return int(value or 0)

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        """The version and the overrides, read together."""
        with redis_errors("read the live settings", config=self.overrides_key):
            pipe = self.redis.pipeline(transaction=True)
            pipe.get(self.version_key)
            pipe.hgetall(self.overrides_key)
            version, raw = pipe.execute()
        return int(version or 0), {_text(k): json.loads(v) for k, v in raw.items()}

    def set(self, base: Settings, key: str, raw: str) -> tuple[str, Any, int]:
        """Validate ``key = raw`` on top of ``base`` and the stored overrides, then store it.

        Returns (normalised key, stored value, new version). Nothing is stored when the
        key may not change live or the value does not validate (ConfigurationError).
        """
        name, value, _ = validated_override(base, self.overrides(), key, raw)
        version = self._write(lambda pipe: pipe.hset(self.overrides_key, name, json.dumps(value)))
        return name, value, version

    def unset(self, base: Settings, key: str) -> tuple[str, int]:
        """Remove the override of ``key``; ConfigurationError if there is none."""
        name = ".".join(check_key(key, base))
        current = self.overrides()
        if name not in current:
            known = ", ".join(sorted(current)) or "none"
            raise ConfigurationError(f"{name} has no live override (overridden: {known})")
        del current[name]
        with_overrides(base, current)  # what remains must still make valid settings
        return name, self._write(lambda pipe: pipe.hdel(self.overrides_key, name))

    def _write(self, change: Callable[[Any], Any]) -> int:
        with redis_errors("store a live setting", config=self.overrides_key):
            pipe = self.redis.pipeline(transaction=True)
            change(pipe)
            pipe.incr(self.version_key)
            version = int(pipe.execute()[-1])
            self.redis.publish(self.channel, str(version))
        return version


class LiveConfigListener:
    """Keeps this process's settings equal to its environment plus the live overrides.

    ``targets`` are the Settings objects of the process (usually one: the object that
    ``get_settings()`` returns and the runtime holds); each keeps a copy of its values
    at start as the base the overrides apply to. ``on_change`` runs after each change
    is applied.
    """

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        targets: list[Settings],
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.store = LiveConfigStore(redis, key_prefix)
        unique = {id(t): t for t in targets}
        self._targets = [(target, target.model_copy(deep=True)) for target in unique.values()]
        self.on_change = on_change
        self.version = 0
        self.applied: dict[str, Any] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.name = f"dspyq-live-config-{uuid.uuid4().hex[:6]}"

    def start(self) -> LiveConfigListener:
        """Apply the stored overrides now (before any job runs), then follow changes."""
        try:
            self.refresh()
        except Exception:
            logger.exception("could not read the live settings; the thread keeps trying")
        self._thread = threading.Thread(target=self._follow, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def refresh(self) -> bool:
        """Read the overrides and apply them if they changed; True when applied."""
        version, overrides = self.store.snapshot()
        with self._lock:
            if version == self.version and overrides == self.applied:
                return False
            try:
                results = [(t, with_overrides(base, overrides)) for t, base in self._targets]
            except ConfigurationError as exc:
                logger.error("live settings of version %d refused: %s", version, exc.message)
                self._report(CONFIG_REJECTED, version, overrides, error=exc.message)
                self.version = version
                return False
            for target, effective in results:
                _assign(target, effective)
            self.version, self.applied = version, overrides
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                logger.exception("applying live settings of version %d failed", version)
        logger.info("live settings version %d applied: %s", version, sorted(overrides))
        self._report(CONFIG_APPLIED, version, overrides)
        return True

    def _report(
        self, event_type: str, version: int, overrides: Mapping[str, Any], **extra: Any
    ) -> None:
        with context(correlation_id=config_correlation_id(version)):
            observe.emit(event_type, {"version": version, "keys": sorted(overrides), **extra})

    def _follow(self) -> None:
        while not self._stop.is_set():
            pubsub = self.store.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.store.channel)
                self.refresh()  # whatever changed while we were not subscribed
                while not self._stop.is_set():
                    if pubsub.get_message(timeout=1.0) is not None:
                        self.refresh()
            except Exception:
                if self._stop.is_set():
                    break
                logger.warning("live settings subscription lost; retrying", exc_info=True)
                self._stop.wait(RESUBSCRIBE_DELAY)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    logger.debug("closing the live settings subscription failed", exc_info=True)


def _assign(target: Settings, effective: Settings) -> None:
    # Field by field into the object everyone holds: each assignment is atomic, so a
    # reader sees either the old or the new value of a section, never a broken one.
    for name in type(target).model_fields:
        new = getattr(effective, name)
        if getattr(target, name) != new:
            setattr(target, name, new)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
