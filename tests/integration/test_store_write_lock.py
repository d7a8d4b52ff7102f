"""Writers of one SQLite file queue in dspyq (threads on a lock, processes on a file lock)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine
from store_fixtures import outcomes_of_processes_at_once

from dspyq.store import ExecutionStore, init_db, make_engine
from dspyq.store.engine import write_transaction
from dspyq.store.write_lock import lock_file_of, write_lock_for

if TYPE_CHECKING:
    from store_fixtures import ProcessContext

pytestmark = pytest.mark.integration


def _path(url: str) -> str:
    return url.removeprefix("sqlite:///")


@contextmanager
def _file_lock_held(database: str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the writers' file lock of ``database`` through a descriptor of our own."""
    fd = os.open(lock_file_of(database), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _write_in_thread(engine: Engine, task_id: str) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def write() -> None:
        try:
            ExecutionStore(engine).create_pending(task_id, "c1", "qa", "Predict", "m", {})
            outcome.append(time.monotonic())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread, outcome


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url, busy_timeout=5.0)
    init_db(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def test_a_writer_waits_for_another_holder_of_the_file_lock_then_goes_at_once(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    with _file_lock_held(_path(sqlite_url)):
        thread, outcome = _write_in_thread(sqlite_engine, "t1")
        time.sleep(0.4)
        assert outcome == [], "the write went ahead while another process held the lock"
        released = time.monotonic()
    thread.join(timeout=5)
    assert len(outcome) == 1 and isinstance(outcome[0], float), outcome
    assert outcome[0] - released < 0.1  # woken within its polling pause, not SQLite's
    assert ExecutionStore(sqlite_engine).get("t1") is not None


def test_the_file_lock_is_held_for_the_whole_transaction_and_released_after(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    database = _path(sqlite_url)
    with write_transaction(sqlite_engine, "hold"), _file_lock_held(database, blocking=False) as got:
        assert not got
    with _file_lock_held(database, blocking=False) as got:
        assert got


def test_the_lock_is_reentrant_and_only_the_outermost_exit_gives_up_the_file(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    database = _path(sqlite_url)
    lock = write_lock_for(database, 5.0)  # the engine's own: one lock per file per process
    with lock:
        with lock:
            pass
        with _file_lock_held(database, blocking=False) as got:
            assert not got, "leaving the inner hold gave up the outer one's file lock"
    with _file_lock_held(database, blocking=False) as got:
        assert got


def test_a_lock_held_past_the_busy_timeout_is_passed_by(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, busy_timeout=0.3)
    init_db(engine)
    try:
        with _file_lock_held(_path(sqlite_url)):
            started = time.monotonic()
            ExecutionStore(engine).create_pending("t1", "c1", "qa", "Predict", "m", {})
            waited = time.monotonic() - started
        assert 0.3 <= waited < 2.0
        assert ExecutionStore(engine).get("t1") is not None
    finally:
        engine.dispose()


def test_in_memory_databases_have_no_lock_file(tmp_path: Any) -> None:
    before = set(os.listdir(tmp_path))
    engine = make_engine("sqlite://")
    init_db(engine)
    ExecutionStore(engine).create_pending("t1", "c1", "qa", "Predict", "m", {})
    assert ExecutionStore(engine).get("t1") is not None
    assert set(os.listdir(tmp_path)) == before
    engine.dispose()


def _write_many_in_child(
    url: str, prefix: str, count: int, barrier: Barrier, results: Queue[Any]
) -> None:
    engine = make_engine(url)
    store = ExecutionStore(engine)
    errors: list[str] = []

    def write(thread: int) -> None:
        for n in range(count):
            try:
                store.create_pending(f"{prefix}-{thread}-{n}", "c", "qa", "Predict", "m", {})
                store.mark_running(f"{prefix}-{thread}-{n}", prefix)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    try:
        barrier.wait()
        threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results.put(errors)
    finally:
        engine.dispose()


def test_processes_writing_at_once_all_get_through(
    sqlite_url: str, sqlite_engine: Engine, process_context: ProcessContext
) -> None:
    workers, count = 3, 40
    outcomes = outcomes_of_processes_at_once(
        process_context,
        _write_many_in_child,
        [(sqlite_url, f"p{n}", count) for n in range(workers)],
    )
    assert outcomes == [[]] * workers
    store = ExecutionStore(sqlite_engine)
    for n in range(workers):
        record = store.get(f"p{n}-3-{count - 1}")
        assert record is not None and record.status == "running"
