"""Statements run on the database driver's own cursor, for the rows every job writes.

SQLAlchemy Core spends 50-80 µs of Python on each statement it runs (parameters
rebuilt from the compiled form, an execution context, a result object) where SQLite
needs 10: on a busy worker, more than the job's own records cost. A
:class:`DriverStatement` is still built with SQLAlchemy (one definition of the SQL,
for both dialects) and compiled once per dialect; its rows are then turned into the
driver's parameters with the columns' own bind processors (the same JSON and
timestamp conversions SQLAlchemy applies) and run on the connection's DBAPI cursor,
inside the caller's transaction. Driver errors are raised as SQLAlchemy's
``DBAPIError``, so :func:`~dspyq.store.engine.store_errors` maps them as any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert

__all__ = ["DriverStatement"]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None  # parameter names in order (positional drivers)
    constants: dict[str, Any]  # the statement's own parameters (e.g. a WHERE's literal)
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]


class DriverStatement:
    """``statement`` (an INSERT, upsert included), given rows as dicts of column values.

    The statement is compiled for the columns a row holds (all the rows of one call
    hold the same ones), once per dialect and set of columns.
    """

    def __init__(self, statement: Insert) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def execute(self, conn: Connection, row: dict[str, Any]) -> int:
        """Run the statement for one row; returns the rows it changed (0 or 1)."""
        compiled = self._for(conn.dialect, tuple(row))
        params = self._params(compiled, row)
        cursor = conn.connection.cursor()
        try:
            with _driver_errors(conn.dialect, compiled.sql, params):
                cursor.execute(compiled.sql, params)
                return int(cursor.rowcount)
        finally:
            cursor.close()

    def execute_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run the statement once for each of ``rows``, in one driver call."""
        if not rows:
            return
        compiled = self._for(conn.dialect, tuple(rows[0]))
        params = [self._params(compiled, row) for row in rows]
        cursor = conn.connection.cursor()
        try:
            with _driver_errors(conn.dialect, compiled.sql, params):
                cursor.executemany(compiled.sql, params)
        finally:
            cursor.close()

    @staticmethod
    def _params(compiled: _Compiled, row: dict[str, Any]) -> Any:
        values = {**compiled.constants, **row}
        for name, process in compiled.processors:
            values[name] = process(values[name])
        if compiled.positions is None:
            return values
        return tuple([values[name] for name in compiled.positions])  # a list: no generator

    def _for(self, dialect: Dialect, columns: tuple[str, ...]) -> _Compiled:
        key = (dialect.name, columns)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(dialect, columns)
        return compiled

    def _compile(self, dialect: Dialect, columns: tuple[str, ...]) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(columns))
        missing = [column.key for column in compiled.insert_prefetch]
        if missing:  # a Python-side default SQLAlchemy would compute per row
            raise ValueError(f"rows of {self.statement.table} must also hold {missing}")
        table_columns = self.statement.table.c
        processors = []
        for name in columns:
            column_type = table_columns[name].type.dialect_impl(dialect)
            process = column_type.bind_processor(dialect)
            if process is not None:
                processors.append((name, process))
        constants = {k: v for k, v in compiled.params.items() if k not in columns}
        positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        return _Compiled(compiled.string, positions, constants, tuple(processors))


@contextmanager
def _driver_errors(dialect: Dialect, sql: str, params: Any) -> Iterator[None]:
    """Raise the driver's errors as SQLAlchemy's, with the statement that failed."""
    base = dialect.loaded_dbapi.Error
    try:
        yield
    except base as exc:
        raise DBAPIError.instance(sql, params, exc, base, hide_parameters=True) from exc
