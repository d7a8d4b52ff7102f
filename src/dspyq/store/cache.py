"""The L3 cache: LM responses kept in SQL, shared by every worker and surviving restarts.

Values are JSON. An entry past its ``expires_at`` is a miss; :meth:`SQLCache.purge_expired`
deletes such entries when housekeeping wants the space back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, or_, select
from sqlmodel import col

from dspyq.errors import StoreError
from dspyq.store.columns import utcnow
from dspyq.store.driver import DriverStatement
from dspyq.store.engine import dialect_insert, read_connection, write_transaction
from dspyq.store.models import CacheEntry

# Built once: a statement built per call costs more to prepare than SQLite takes to
# answer it (about 190 µs against 70 µs per lookup), and every LM call that misses
# the Redis cache makes one.
_LOOKUP = select(col(CacheEntry.value)).where(
    col(CacheEntry.key) == bindparam("key"),
    or_(col(CacheEntry.expires_at).is_(None), col(CacheEntry.expires_at) > bindparam("now")),
)


class SQLCache:
    """A key/value cache with expiry in the ``cache_entries`` table.

    ``clock`` is the source of "now" (a seam for tests and for replaying at a fixed time).
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._upserts: dict[str, DriverStatement] = {}  # per dialect: every answer makes one

    def get(self, key: str) -> Any | None:
        """The value cached under ``key``, or None if absent or expired."""
        with read_connection(self.engine, "read the SQL cache") as conn:
            return conn.execute(_LOOKUP, {"key": key, "now": self.clock()}).scalar_one_or_none()

    def latest_expiry(self, prefix: str = "") -> float | None:
        """When the last live entry under ``prefix`` (default: any) expires (Unix time).

        None if there is no live entry; ``math.inf`` if one never expires. Without a
        prefix both lookups are answered from the ``expires_at`` index.
        """
        expires = col(CacheEntry.expires_at)
        conditions = [col(CacheEntry.key).startswith(prefix, autoescape=True)] if prefix else []
        with read_connection(self.engine, "read the SQL cache's expiries") as conn:
            never = select(col(CacheEntry.key)).where(*conditions, expires.is_(None)).limit(1)
            if conn.execute(never).first() is not None:
                return math.inf
            latest = conn.execute(
                select(func.max(expires)).where(*conditions, expires > self.clock())
            ).scalar_one_or_none()
        return None if latest is None else latest.timestamp()

    def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Cache ``value`` under ``key`` for ``ttl`` seconds (None: until deleted)."""
        self.put_many([(key, value)], ttl=ttl)

    def put_many(self, entries: Sequence[tuple[str, Any]], ttl: float | None = None) -> None:
        """Cache every ``(key, value)`` of ``entries`` for ``ttl`` seconds, in one transaction."""
        if not entries:
            return
        for key, value in entries:
            if value is None:
                raise StoreError("cannot cache None: it is how a miss reads", context={"key": key})
        now = self.clock()
        expires_at = None if ttl is None else now + timedelta(seconds=ttl)
        rows = [
            {"key": key, "value": value, "created_at": now, "expires_at": expires_at}
            for key, value in dict(entries).items()  # one row per key: the last value wins
        ]
        with write_transaction(self.engine, "write the SQL cache") as conn:
            self._upsert(conn).execute_many(conn, rows)

    def _upsert(self, conn: Connection) -> DriverStatement:
        upsert = self._upserts.get(conn.dialect.name)
        if upsert is None:
            insert = dialect_insert(conn, CacheEntry)
            upsert = self._upserts[conn.dialect.name] = DriverStatement(
                insert.on_conflict_do_update(
                    index_elements=["key"],
                    set_={
                        "value": insert.excluded.value,
                        "created_at": insert.excluded.created_at,
                        "expires_at": insert.excluded.expires_at,
                    },
                )
            )
        return upsert

    def delete(self, key: str) -> bool:
        """Forget ``key``; returns whether it was cached."""
        with write_transaction(self.engine, "delete from the SQL cache") as conn:
            result = conn.execute(delete(CacheEntry).where(col(CacheEntry.key) == key))
            return result.rowcount == 1

    def purge_expired(self) -> int:
        """Delete every expired entry; returns how many."""
        with write_transaction(self.engine, "purge the SQL cache") as conn:
            result = conn.execute(
                delete(CacheEntry).where(col(CacheEntry.expires_at) <= self.clock())
            )
            return result.rowcount
