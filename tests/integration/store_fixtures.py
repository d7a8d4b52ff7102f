"""Fixtures giving each store test its own real database: a SQLite file in tmp_path, or
a PostgreSQL database created for the test and dropped after it.

PostgreSQL is found at ``DSPYQ_TEST_POSTGRES_URL`` (default: the local server, user
``postgres``, database ``test``, used only to create and drop the per-test databases).
When that variable is unset and no server answers, the PostgreSQL cases are skipped;
when it is set, an unreachable server fails them.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from dspyq.store import init_db, make_engine

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, SpawnContext

    ProcessContext: TypeAlias = ForkContext | SpawnContext

POSTGRES_URL_ENV = "DSPYQ_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _admin_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of a database on the PostgreSQL server, used to create and drop test databases."""
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    try:
        with psycopg.connect(_admin_conninfo(url), connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        if POSTGRES_URL_ENV in os.environ:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL_ENV}={url} is unreachable: {exc}")
        pytest.skip(f"no PostgreSQL at {url} (set {POSTGRES_URL_ENV}): {exc}")
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test only."""
    name = f"dspyq_t_{uuid.uuid4().hex[:8]}"
    admin = _admin_conninfo(postgres_admin_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    """A SQLite database file (not yet created) in this test's temporary directory."""
    return f"sqlite:///{os.path.join(tmp_path, 'store.db')}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty database, once per supported backend."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param]
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def store_engine(store_url: str) -> Iterator[Engine]:
    """An engine on a fresh database with the store's schema, once per backend."""
    engine = make_engine(store_url)
    init_db(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def process_context() -> ProcessContext:
    """How tests start competing processes: spawned, each building its own engine.

    Not forked: by then the test process runs threads (servers, pools), and a fork
    copies any lock one of them holds, which can hang the child forever."""
    return multiprocessing.get_context("spawn")


def outcomes_of_processes_at_once(
    context: ProcessContext, target: Callable[..., None], args: Sequence[tuple[Any, ...]]
) -> list[Any]:
    """Run ``target(*arguments, barrier, results)`` in one process per ``args`` entry,
    all let go at once by ``barrier``; each puts its outcome on ``results``. Returns the
    outcomes, in the order they came."""
    barrier = context.Barrier(len(args))
    results = context.Queue()
    processes = [context.Process(target=target, args=(*each, barrier, results)) for each in args]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return outcomes
