"""Engines for the store: SQLite by default, PostgreSQL in production.

:func:`make_engine` turns a database URL into a tuned SQLAlchemy engine (the seam every
repository receives); :func:`init_db` brings its schema to the latest migration.
:func:`store_errors`, :func:`read_connection` and :func:`write_transaction` are how the
repositories talk to the database, so that SQLAlchemy's exceptions never reach users.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.pool import StaticPool

from dspyq.errors import ConfigurationError, DspyqError, StoreError, StoreUnavailableError
from dspyq.store.migrate import upgrade_to_head
from dspyq.store.write_lock import WriteLock, write_lock_for

SQLITE_BUSY_TIMEOUT_S = 30.0
"""Default wait of a SQLite writer for another connection's write lock before giving up."""

POSTGRES_CONNECT_TIMEOUT_S = 10
"""Default ``connect_timeout`` for PostgreSQL, so an unreachable server fails fast."""

_SQLITE_BEGIN = "dspyq_sqlite_begin"
_SUPPORTED = (
    "dspyq stores to SQLite ('sqlite:///path/to/dspyq.db') "
    "or PostgreSQL ('postgresql://user:password@host:5432/dbname')"
)
_SQLITE_UNAVAILABLE_MARKERS = ("locked", "busy", "unable to open", "disk i/o", "readonly")


def make_engine(
    url: str | URL | None = None,
    *,
    echo: bool = False,
    busy_timeout: float = SQLITE_BUSY_TIMEOUT_S,
) -> Engine:
    """An engine for ``url`` (default: the ``database_url`` setting).

    SQLite gets WAL mode, a busy timeout, foreign keys and its directory created;
    a relative path is resolved against the current directory now, not at each
    connection; ``busy_timeout`` (seconds) is how long a writer waits for another's
    lock. PostgreSQL goes through psycopg 3 with ``pool_pre_ping``. Nothing connects
    yet; an unusable URL raises :class:`ConfigurationError` here.
    """
    if url is None:
        from dspyq.settings import get_settings

        url = get_settings().database_url
    parsed = _parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, echo, busy_timeout)
    return _postgresql_engine(parsed, echo)


def init_db(engine: Engine) -> None:
    """Create or upgrade the store's schema to the latest migration.

    Safe to call from several processes at once: on PostgreSQL the upgrade runs under
    a transaction-scoped advisory lock, on SQLite inside ``BEGIN IMMEDIATE`` (SQLite's
    database-wide write lock), so latecomers wait and then find nothing left to do.
    """
    with store_errors(engine, "create or upgrade the store's schema"), engine.connect() as conn:
        conn.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        with conn.begin():
            upgrade_to_head(conn)


@contextmanager
def store_errors(engine: Engine, action: str) -> Iterator[None]:
    """Map SQLAlchemy exceptions raised inside the block to dspyq's store errors.

    ``action`` completes "could not ..." in the message. Connection failures and
    lock timeouts become :class:`StoreUnavailableError` (worth retrying); anything
    else becomes :class:`StoreError`.
    """
    try:
        yield
    except DspyqError:
        raise
    except SQLAlchemyError as exc:
        raise _translate(engine, action, exc) from exc


@contextmanager
def read_connection(engine: Engine, action: str) -> Iterator[Connection]:
    """A connection for reads, with errors mapped."""
    with store_errors(engine, action), engine.connect() as conn:
        yield conn


RecordT = TypeVar("RecordT", bound=BaseModel)


class EngineStore:
    """Base of the stores: each reads and writes its own tables through ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine


def read_records(engine: Engine, action: str, record: type[RecordT], query: Any) -> list[RecordT]:
    """Every row ``query`` selects, as ``record`` models (one read connection)."""
    with read_connection(engine, action) as conn:
        rows = conn.execute(query).mappings().all()
    return [record.model_validate(dict(row)) for row in rows]


def read_record(engine: Engine, action: str, record: type[RecordT], query: Any) -> RecordT | None:
    """The first row ``query`` selects, as a ``record`` model, or None when it selects none."""
    with read_connection(engine, action) as conn:
        row = conn.execute(query).mappings().first()
    return None if row is None else record.model_validate(dict(row))


def where_equal(query: Any, record: type[Any], **values: Any) -> Any:
    """``query`` narrowed to rows whose columns equal the given values; a None value
    does not narrow (it means "any")."""
    for name, value in values.items():
        if value is not None:
            query = query.where(getattr(record, name) == value)
    return query


@contextmanager
def write_transaction(engine: Engine, action: str) -> Iterator[Connection]:
    """A connection inside a transaction committed at the end of the block.

    On SQLite the transaction takes the write lock up front (``BEGIN IMMEDIATE``):
    a read-then-write transaction started as a reader could otherwise fail with
    "database is locked" without waiting, when another process wrote meanwhile.
    """
    with _process_write_lock(engine), store_errors(engine, action), engine.connect() as conn:
        conn.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        with conn.begin():
            yield conn


_write_locks: weakref.WeakKeyDictionary[Engine, WriteLock] = weakref.WeakKeyDictionary()
_write_locks_guard = threading.Lock()


def _process_write_lock(engine: Engine) -> AbstractContextManager[Any]:
    """On SQLite, writers queue for the write lock in dspyq rather than in SQLite.

    SQLite's own busy handler makes a waiting writer sleep 1, 2, 5, 10, 25 ms... between
    tries; the threads of a process queue on a Python lock and processes on a file lock
    instead (:mod:`dspyq.store.write_lock`), so the next writer goes as soon as the last
    one commits (measured: about 10% more jobs/s for one worker process, and for two
    on one database). PostgreSQL needs no such thing.
    """
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _write_locks_guard:
        lock = _write_locks.get(engine)
        if lock is None:  # an engine not made by make_engine: its threads still queue
            lock = _write_locks[engine] = WriteLock(None, SQLITE_BUSY_TIMEOUT_S)
    return lock


def dialect_insert(conn: Connection, entity: Any) -> sqlite.Insert | postgresql.Insert:
    """An INSERT for ``entity`` that supports ``ON CONFLICT`` on the connection's database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(entity)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(entity)
    raise ConfigurationError(f"unsupported database {conn.dialect.name!r}: {_SUPPORTED}")


def insert_once(conn: Connection, entity: Any, key: str, values: Any) -> Any:
    """An INSERT of ``values`` (a row or a list of rows) that does nothing for a row whose
    ``key`` is already stored: what every write that may be delivered twice starts with."""
    return dialect_insert(conn, entity).values(values).on_conflict_do_nothing(index_elements=[key])


def describe(engine: Engine) -> str:
    """The engine's URL with the password hidden, for messages and logs."""
    return engine.url.render_as_string(hide_password=True)


def _parse_url(url: str | URL) -> URL:
    if isinstance(url, str):
        text = url.strip()
        if not text:
            raise ConfigurationError(f"the database URL is empty: {_SUPPORTED}")
        if text.startswith("postgres://"):
            text = "postgresql://" + text[len("postgres://") :]
        try:
            parsed = make_url(text)
        except ArgumentError as exc:
            raise ConfigurationError(
                f"cannot parse database URL {text!r}: {_SUPPORTED}",
                context={"url": text},
            ) from exc
    else:
        parsed = url
    # Split by hand: URL.get_driver_name() loads the dialect, which fails for unknown ones.
    backend, _, driver = parsed.drivername.partition("+")
    shown = parsed.render_as_string(hide_password=True)
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ConfigurationError(
                f"unsupported SQLite driver {driver!r} in {shown}: use 'sqlite:///path.db'",
                context={"url": shown},
            )
        return parsed.set(drivername="sqlite")
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise ConfigurationError(
                f"unsupported PostgreSQL driver {driver!r} in {shown}: dspyq uses psycopg 3, "
                "write 'postgresql://...' or 'postgresql+psycopg://...'",
                context={"url": shown},
            )
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigurationError(
        f"unsupported database {backend!r} in {shown}: {_SUPPORTED}", context={"url": shown}
    )


def _is_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or url.query.get("mode") == "memory"


def _sqlite_engine(url: URL, echo: bool, busy_timeout: float) -> Engine:
    memory = _is_memory(url)
    database = url.database or ""
    kwargs: dict[str, Any] = {"echo": echo, "json_serializer": _json_dumps}
    if memory:
        # One shared connection, or every checkout would see a different empty database.
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"] = {"check_same_thread": False}
    elif not database.startswith("file:"):
        path = Path(database).expanduser().resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the directory of the SQLite database {path}: {exc}",
                context={"url": str(url)},
            ) from exc
        url = url.set(database=str(path))
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise ConfigurationError(f"cannot use database URL {url}: {exc}") from exc

    # Engines on one file share its lock (and the file lock between processes); a
    # database of this process alone (memory, or a URI we do not parse) has its own.
    shared = None if memory or database.startswith("file:") else url.database
    lock = write_lock_for(shared, busy_timeout) if shared else WriteLock(None, busy_timeout)
    with _write_locks_guard:
        _write_locks[engine] = lock
    busy_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below: the sqlite3
        # module's own implicit BEGIN would not cover DDL or let us choose IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if not memory:
                _enable_wal(cursor, busy_timeout)
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get(_SQLITE_BEGIN, "BEGIN"))

    return engine


def _enable_wal(cursor: sqlite3.Cursor, busy_timeout: float) -> None:
    """Switch the database to WAL (a no-op once it is: the mode is stored in the file).

    Two connections switching a new database at the same moment each hold a read lock
    and want the exclusive one: SQLite fails one of them at once instead of calling the
    busy handler (it would deadlock), so that one retries here until the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _postgresql_engine(url: URL, echo: bool) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    try:
        return create_engine(
            url,
            echo=echo,
            pool_pre_ping=True,
            connect_args=connect_args,
            json_serializer=_json_dumps,
        )
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        shown = url.render_as_string(hide_password=True)
        raise ConfigurationError(f"cannot use database URL {shown}: {exc}") from exc


_JSON_COLUMN = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
"""One encoder for every JSON column value (``json.dumps`` with options builds one per call)."""


def _json_dumps(value: Any) -> str:
    """Serialise a JSON column value, refusing what is not JSON the same way on every backend.

    NaN and infinities are refused too: PostgreSQL would reject them, SQLite would not.
    """
    try:
        return _JSON_COLUMN.encode(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"value is not JSON: {exc}") from exc


def _translate(engine: Engine, action: str, exc: SQLAlchemyError) -> StoreError:
    where = describe(engine)
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    reason = lines[0] if lines else type(cause).__name__
    context = {"database": where, "action": action, "cause": type(exc).__name__}
    if _is_unavailable(engine, exc):
        return StoreUnavailableError(
            f"could not {action}: the database at {where} is unavailable ({reason})",
            context=context,
        )
    hint = ""
    lowered = reason.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        hint = "; is the schema created? call dspyq.store.init_db(engine)"
    return StoreError(f"could not {action}: {reason}{hint}", context=context)


def _is_unavailable(engine: Engine, exc: SQLAlchemyError) -> bool:
    if isinstance(exc, InterfaceError | DisconnectionError):
        return True
    if getattr(exc, "connection_invalidated", False):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if engine.dialect.name == "sqlite":
        # SQLite reports a missing table or a syntax slip as OperationalError too.
        message = str(exc.orig).lower()
        return any(marker in message for marker in _SQLITE_UNAVAILABLE_MARKERS)
    return True
