"""A worker's cache of resolved programs, kept current by alias announcements.

Workers resolve ``qa@production`` at the start of every job; reading SQL each time would
cost a round trip per job, and caching with a TTL would serve a moved alias for as long
as the TTL. :class:`ProgramCache` caches instead until told: a daemon thread subscribed
to ``<key_prefix>:aliases`` drops an alias's target the moment a ``moved`` message
arrives (and loads the version a ``prepare`` message names, ahead of its traffic), so
the next job re-reads it. As a fallback for a missed message (Redis restarted, a
publisher that died between its SQL commit and its announcement), the cached targets
are compared with the alias rows' revisions in SQL every ``recheck_interval`` seconds,
and everything is dropped whenever the subscription is (re)established.

Saved versions never change, so their specs are cached by (name, version) without
invalidation (least recently used dropped past ``max_versions``). A resolved program is
an immutable value: a job keeps the version it started with whatever moves meanwhile.
Held by the worker's context, one per process; thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from dspyq.deploy.announce import alias_channel, parse_alias_message
from dspyq.program_ref import ProgramRef, parse_program_ref
from dspyq.store.models import AliasRecord, ProgramRecord
from dspyq.store.resolve import ProgramResolver, ResolvedProgram, choose_version

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["ProgramCache"]

logger = logging.getLogger(__name__)

RESUBSCRIBE_DELAY = 1.0
"""Seconds between attempts to get the subscription back after Redis went away."""


class ProgramCache:
    """Resolves references through ``engine``, caching what it may; see the module doc."""

    def __init__(
        self,
        engine: Engine,
        redis: Redis | None = None,
        key_prefix: str = "dspyq",
        *,
        recheck_interval: float = 5.0,
        max_versions: int = 256,
    ) -> None:
        self.resolver = ProgramResolver(engine)
        self.redis = redis
        self.channel = alias_channel(key_prefix)
        self.recheck_interval = recheck_interval
        self.max_versions = max_versions
        self.invalidations = 0
        """How many times a target was dropped (by a message, a re-check or a resubscribe)."""
        self._targets: dict[tuple[str, str], AliasRecord] = {}
        self._versions: OrderedDict[tuple[str, int], ProgramRecord] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        self._checked_at = time.monotonic()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None

    def resolve(self, reference: str | ProgramRef, job_id: str | None = None) -> ResolvedProgram:
        """The version ``reference`` names now for job ``job_id`` (which decides a canary)."""
        ref = parse_program_ref(reference)
        self._recheck_if_due()
        canary = False
        if ref.alias is not None:
            version, canary = choose_version(self._target(ref.name, ref.alias), job_id)
            record = self._version(ref.name, version)
        elif ref.version is not None:
            record = self._version(ref.name, ref.version)
        else:  # the latest: saving a version announces nothing, so always ask SQL
            record = self._remember(self.resolver.record(ref.name))
        return ResolvedProgram.of(record, str(ref), canary)

    def invalidate(self, name: str | None = None, alias: str | None = None) -> None:
        """Drop the cached target of ``name@alias`` (of every alias of ``name``; of all)."""
        with self._lock:
            self._generation += 1
            doomed = [
                key
                for key in self._targets
                if (name is None or key[0] == name) and (alias is None or key[1] == alias)
            ]
            for key in doomed:
                del self._targets[key]
            self.invalidations += len(doomed)

    def recheck(self) -> int:
        """Drop the cached targets whose alias row moved in SQL; returns how many."""
        self._checked_at = time.monotonic()
        with self._lock:
            cached = dict(self._targets)
        if not cached:
            return 0
        rows = {(row.name, row.alias): row.revision for row in self.resolver.aliases.list()}
        stale = [key for key, target in cached.items() if rows.get(key) != target.revision]
        for name, alias in stale:
            self.invalidate(name, alias)
        return len(stale)

    # --- following the announcements -------------------------------------------------

    def start(self, wait: float = 5.0) -> ProgramCache:
        """Follow the announcements in a daemon thread; waits up to ``wait`` seconds for
        the first subscription, so a move announced after this returns is not missed."""
        if self.redis is None:
            raise ValueError("ProgramCache.start() needs a Redis client")
        self._thread = threading.Thread(
            target=self._follow, name=f"dspyq-aliases-{uuid.uuid4().hex[:6]}", daemon=True
        )
        self._thread.start()
        self._subscribed.wait(wait)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _follow(self) -> None:
        assert self.redis is not None
        while not self._stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.invalidate()  # whatever moved while we were not listening
                self._subscribed.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=min(1.0, self.recheck_interval))
                    if message is not None:
                        self._on_message(message.get("data"))
                    self._recheck_if_due()
            except Exception:
                if self._stop.is_set():
                    break
                logger.warning("alias subscription lost; retrying", exc_info=True)
                self._stop.wait(RESUBSCRIBE_DELAY)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    logger.debug("closing the alias subscription failed", exc_info=True)

    def _on_message(self, raw: object) -> None:
        message = parse_alias_message(raw) if isinstance(raw, bytes | str) else None
        if message is None:
            return
        if message.event == "moved":
            self.invalidate(message.name, message.alias)
            return
        try:  # "prepare": load the version before its traffic arrives
            self._version(message.name, message.version)
        except Exception:
            logger.debug("could not load %s:%s ahead", message.name, message.version, exc_info=True)

    # --- the cached lookups ----------------------------------------------------------

    def _recheck_if_due(self) -> None:
        if time.monotonic() - self._checked_at >= self.recheck_interval:
            try:
                self.recheck()
            except Exception:
                logger.warning("could not re-check the aliases in SQL", exc_info=True)

    def _target(self, name: str, alias: str) -> AliasRecord:
        key = (name, alias)
        with self._lock:
            found = self._targets.get(key)
            generation = self._generation
        if found is not None:
            return found
        target = self.resolver.target(name, alias)
        with self._lock:
            # An invalidation while we read may concern what we read: do not keep it.
            if generation == self._generation:
                self._targets[key] = target
        return target

    def _version(self, name: str, version: int) -> ProgramRecord:
        with self._lock:
            found = self._versions.get((name, version))
            if found is not None:
                self._versions.move_to_end((name, version))
                return found
        return self._remember(self.resolver.record(name, version))

    def _remember(self, record: ProgramRecord) -> ProgramRecord:
        with self._lock:
            self._versions[(record.name, record.version)] = record
            self._versions.move_to_end((record.name, record.version))
            while len(self._versions) > self.max_versions:
                self._versions.popitem(last=False)
        return record
