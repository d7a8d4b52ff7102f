"""The store's engines and schema: URLs, SQLite tuning, migrations, error mapping."""

from __future__ import annotations

import sqlite3
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, Integer, MetaData, inspect, text
from store_fixtures import outcomes_of_processes_at_once

from dspyq.errors import ConfigurationError, StoreError, StoreUnavailableError
from dspyq.store import ExecutionStore, init_db, make_engine
from dspyq.store.migrate import alembic_config
from dspyq.store.models import metadata

if TYPE_CHECKING:
    from store_fixtures import ProcessContext

pytestmark = pytest.mark.integration

STORE_TABLES = {"executions", "events", "lm_requests", "cache_entries"}


def _schema_diff(engine: Engine, target: MetaData) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, target))


def _head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "not a url",
        "mysql://user@localhost/db",
        "redis://localhost:6379/0",
        "postgresql+psycopg2://user@localhost/db",
        "sqlite+aiosqlite:///x.db",
    ],
)
def test_bad_url_raises_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_engine(url)
    assert "sqlite" in caught.value.message.lower() or "psycopg" in caught.value.message
    assert caught.value.code == 1001


def test_postgres_scheme_alias_uses_psycopg() -> None:
    engine = make_engine("postgres://user:secret@db.example:5432/dspyq")
    assert engine.dialect.name == "postgresql"
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_unreachable_postgres_raises_store_unavailable() -> None:
    engine = make_engine("postgresql://postgres:hunter2@127.0.0.1:1/test?connect_timeout=3")
    try:
        with pytest.raises(StoreUnavailableError) as on_init:
            init_db(engine)
        with pytest.raises(StoreUnavailableError) as on_read:
            ExecutionStore(engine).get("task-1")
    finally:
        engine.dispose()
    assert on_init.value.code == 2101
    assert on_init.value.retry_strategy == "backoff"
    assert "127.0.0.1:1" in on_read.value.message
    assert "hunter2" not in on_read.value.message
    assert "hunter2" not in str(on_read.value.context)


def test_relative_sqlite_url_is_created_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite:///data/nested/dspyq.db")
    monkeypatch.chdir("/")  # the path was resolved when the engine was made
    try:
        init_db(engine)
    finally:
        engine.dispose()
    assert (tmp_path / "data" / "nested" / "dspyq.db").is_file()


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, busy_timeout=12.5)
    try:
        with engine.connect() as conn:
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
            foreign_keys = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
    finally:
        engine.dispose()
    assert (journal, busy, foreign_keys) == ("wal", 12500, 1)


def test_in_memory_sqlite_keeps_one_database_across_connections() -> None:
    engine = make_engine("sqlite://")
    try:
        init_db(engine)
        assert set(inspect(engine).get_table_names()) >= STORE_TABLES
    finally:
        engine.dispose()


def test_init_db_creates_the_schema_at_head(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        init_db(engine)
        assert set(inspect(engine).get_table_names()) >= STORE_TABLES
        assert _current_revision(engine) == _head_revision()
    finally:
        engine.dispose()


def test_init_db_twice_is_harmless(store_engine: Engine) -> None:
    ExecutionStore(store_engine).create_pending("t1", "c1", "qa", "Predict", "m", {"q": "x"})
    init_db(store_engine)
    init_db(store_engine)
    assert _current_revision(store_engine) == _head_revision()
    record = ExecutionStore(store_engine).get("t1")
    assert record is not None
    assert record.inputs == {"q": "x"}


def _init_db_in_child(url: str, barrier: Barrier, results: Queue[Any]) -> None:
    engine = make_engine(url)
    try:
        barrier.wait()
        init_db(engine)
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def test_init_db_from_several_processes_at_once(
    store_url: str, process_context: ProcessContext
) -> None:
    workers = 4
    outcomes = outcomes_of_processes_at_once(
        process_context, _init_db_in_child, [(store_url,)] * workers
    )
    assert outcomes == ["ok"] * workers
    engine = make_engine(store_url)
    try:
        assert _current_revision(engine) == _head_revision()
        assert _schema_diff(engine, metadata) == []
    finally:
        engine.dispose()


def _connect_to_new_files_in_child(paths: list[str], barrier: Barrier, results: Queue[Any]) -> None:
    modes = []
    for path in paths:
        engine = make_engine(f"sqlite:///{path}")
        barrier.wait()
        try:
            with engine.connect() as conn:
                modes.append(str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()))
        except Exception as exc:
            modes.append(f"{type(exc).__name__}: {exc}")
        finally:
            engine.dispose()
    results.put(modes)


def test_processes_opening_a_new_sqlite_file_at_once_all_get_wal(
    tmp_path: Path, process_context: ProcessContext
) -> None:
    # Switching a new file to WAL from several processes at once makes SQLite refuse
    # all but one without waiting; the engine must retry, not fail.
    workers, rounds = 6, 30
    paths = [str(tmp_path / f"race-{n}.db") for n in range(rounds)]
    outcomes = outcomes_of_processes_at_once(
        process_context, _connect_to_new_files_in_child, [(paths,)] * workers
    )
    assert outcomes == [["wal"] * rounds] * workers


def test_migrations_produce_the_schema_of_the_models(store_engine: Engine) -> None:
    assert _schema_diff(store_engine, metadata) == []


def test_schema_comparison_notices_a_drift(store_engine: Engine) -> None:
    # Proves the check above can fail: a model with one column more than the migrations.
    drifted = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["events"].append_column(Column("severity", Integer(), nullable=True))
    diff = _schema_diff(store_engine, drifted)
    assert [entry[0] for entry in diff] == ["add_column"]


def test_missing_schema_is_a_store_error_naming_init_db(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        with pytest.raises(StoreError) as caught:
            ExecutionStore(engine).get("task-1")
    finally:
        engine.dispose()
    assert not isinstance(caught.value, StoreUnavailableError)
    assert "init_db" in caught.value.message


def test_sqlite_lock_held_too_long_raises_store_unavailable(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, busy_timeout=0.2)
    init_db(engine)
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailableError) as caught:
            ExecutionStore(engine).create_pending("t1", "c1", "qa", "Predict", "m", {})
        assert "locked" in caught.value.message
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


def test_non_json_values_are_a_store_error(store_engine: Engine) -> None:
    with pytest.raises(StoreError) as caught:
        ExecutionStore(store_engine).create_pending(
            "t1", "c1", "qa", "Predict", "m", {"when": object()}
        )
    assert "JSON" in caught.value.message


def test_engine_reads_are_plain_sql_underneath(store_engine: Engine) -> None:
    # The tables are ordinary SQL: other tools (dashboards, psql) can read them.
    ExecutionStore(store_engine).create_pending("t1", "c1", "qa", "Predict", "m", {"q": "x"})
    with store_engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM executions WHERE task_id = 't1'")).scalar()
    assert status == "pending"
