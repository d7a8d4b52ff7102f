"""Execution records: idempotent, monotonic writes that survive redelivered tasks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import col
from store_fixtures import outcomes_of_processes_at_once

from dspyq.errors import InputError
from dspyq.store import ExecutionRecord, ExecutionStore, make_engine

if TYPE_CHECKING:
    from store_fixtures import ProcessContext

pytestmark = pytest.mark.integration

JSON_PAYLOADS: list[dict[str, Any]] = [
    {"question": "What is the capital of France?"},
    {"text": "naïve café — 東京 🚀", "empty": "", "quote": 'say "hi"\\n'},
    {"nested": {"list": [1, 2.5, True, False, None, {"deep": ["x"]}]}, "null": None},
    {"big": 2**53 + 1, "negative": -17, "float": 0.1, "exp": 1e-300},
    {"demos": [{"question": f"q{n}", "answer": "a" * 500} for n in range(200)]},
]


def _count(engine: Engine, task_id: str) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(ExecutionRecord)
        query = query.where(col(ExecutionRecord.task_id) == task_id)
        return int(conn.execute(query).scalar_one())


def _pending(store: ExecutionStore, task_id: str = "task-1", **overrides: Any) -> ExecutionRecord:
    args: dict[str, Any] = {
        "correlation_id": "corr-1",
        "program": "qa",
        "module_type": "ChainOfThought",
        "lm": "openai/gpt-4o-mini",
        "inputs": {"question": "2+2?"},
    }
    args.update(overrides)
    return store.create_pending(task_id, **args)


def test_create_pending_records_the_submission(store_engine: Engine) -> None:
    store = ExecutionStore(store_engine)
    record = _pending(store, parent_id="task-0")
    assert record.status == "pending"
    assert (record.program, record.module_type, record.lm) == (
        "qa",
        "ChainOfThought",
        "openai/gpt-4o-mini",
    )
    assert record.inputs == {"question": "2+2?"}
    assert record.parent_id == "task-0"
    assert record.attempts == 0
    assert record.created_at.tzinfo is UTC
    assert store.get("task-1") == record


def test_create_pending_twice_returns_the_existing_row_unchanged(store_engine: Engine) -> None:
    store = ExecutionStore(store_engine)
    first = _pending(store)
    store.mark_running("task-1", "worker-a")
    again = _pending(store, inputs={"question": "changed"}, program="other")
    assert again.id == first.id
    assert again.inputs == {"question": "2+2?"}
    assert again.program == "qa"
    assert again.status == "running"
    assert _count(store_engine, "task-1") == 1


def test_mark_running_counts_attempts_and_records_the_node(store_engine: Engine) -> None:
    store = ExecutionStore(store_engine)
    _pending(store)
    assert store.mark_running("task-1", "worker-a")
    assert store.mark_running("task-1", "worker-b")
    record = store.get("task-1")
    assert record is not None
    assert (record.status, record.attempts, record.node) == ("running", 2, "worker-b")
    assert record.started_at is not None
    assert record.started_at.tzinfo is UTC


def test_mark_succeeded_twice_writes_once(store_engine: Engine) -> None:
    store = ExecutionStore(store_engine)
    _pending(store)
    store.mark_running("task-1", "worker-a")
    assert store.mark_succeeded("task-1", {"answer": "4"}, 120, 8, 0.00042, 1) is True
    assert store.mark_succeeded("task-1", {"answer": "5"}, 999, 999, 9.0, 9) is False
    record = store.get("task-1")
    assert record is not None
    assert record.status == "succeeded"
    assert record.outputs == {"answer": "4"}
    assert (record.input_tokens, record.output_tokens, record.lm_calls) == (120, 8, 1)
    assert record.cost_usd == pytest.approx(0.00042)
    assert record.finished_at is not None
    assert record.started_at is not None
    assert record.finished_at >= record.started_at
    assert record.duration_ms is not None
    assert record.duration_ms >= 0
    assert _count(store_engine, "task-1") == 1


def test_mark_succeeded_creates_a_row_never_recorded_as_pending(store_engine: Engine) -> None:
    store = ExecutionStore(store_engine)
    assert store.mark_succeeded(
        "task-9", {"answer": "ok"}, 1, 2, 0.5, 1, correlation_id="corr-9", duration_ms=12.5
    )
    record = store.get("task-9")
    assert record is not None
    assert (record.status, record.correlation_id, record.attempts) == ("succeeded", "corr-9", 1)
    assert record.outputs == {"answer": "ok"}
    assert record.duration_ms == 12.5
    assert store.mark_succeeded("task-9", {"answer": "again"}) is False


def test_success_is_final(store_engine: Engine) -> None:
    store = ExecutionStore(store_engine)
    _pending(store)
    store.mark_running("task-1", "worker-a")
    store.mark_succeeded("task-1", {"answer": "4"})
    error = InputError("missing field 'question'").to_dict()
    assert store.mark_failed("task-1", error) is False
    assert store.mark_running("task-1", "worker-b") is False
    record = store.get("task-1")
    assert record is not None
    assert (record.status, record.error, record.attempts, record.node) == (
        "succeeded",
        None,
        1,
        "worker-a",
    )


def test_failure_is_recorded_and_not_regressed_to_running(store_engine: Engine) -> None:
    store = ExecutionStore(store_engine)
    _pending(store)
    store.mark_running("task-1", "worker-a")
    error = InputError("missing field 'question'", correlation_id="corr-1").to_dict()
    assert store.mark_failed("task-1", error) is True
    assert store.mark_running("task-1", "worker-b") is False
    record = store.get("task-1")
    assert record is not None
    assert record.status == "failed"
    assert record.error == error
    assert record.error["code"] == 3002


def test_a_retry_that_succeeds_after_a_failure_wins(store_engine: Engine) -> None:
    store = ExecutionStore(store_engine)
    _pending(store)
    store.mark_failed("task-1", {"type": "ProviderUnavailableError", "code": 4503})
    assert store.mark_succeeded("task-1", {"answer": "4"}) is True
    record = store.get("task-1")
    assert record is not None
    assert (record.status, record.error, record.outputs) == ("succeeded", None, {"answer": "4"})


def test_list_filters_by_correlation_and_status_in_creation_order(store_engine: Engine) -> None:
    store = ExecutionStore(store_engine)
    for n in range(5):
        _pending(store, f"hop-{n}", correlation_id="chain", parent_id=f"hop-{n - 1}" if n else None)
    _pending(store, "elsewhere", correlation_id="other")
    store.mark_succeeded("hop-1", {"answer": "x"})
    store.mark_succeeded("hop-3", {"answer": "y"})

    chain = store.list(correlation_id="chain")
    assert [r.task_id for r in chain] == [f"hop-{n}" for n in range(5)]
    assert [r.parent_id for r in chain] == [None, "hop-0", "hop-1", "hop-2", "hop-3"]
    done = store.list(correlation_id="chain", status="succeeded")
    assert [r.task_id for r in done] == ["hop-1", "hop-3"]
    assert [r.task_id for r in store.list(status="pending", limit=2)] == ["hop-0", "hop-2"]
    assert len(store.list()) == 6
    assert store.get("missing") is None


@pytest.mark.parametrize("payload", JSON_PAYLOADS, ids=lambda p: ",".join(p)[:30])
def test_json_columns_round_trip(store_engine: Engine, payload: dict[str, Any]) -> None:
    store = ExecutionStore(store_engine)
    _pending(store, inputs=payload)
    store.mark_succeeded("task-1", payload)
    store.mark_failed("task-2", payload)
    succeeded, failed = store.get("task-1"), store.get("task-2")
    assert succeeded is not None
    assert failed is not None
    assert succeeded.inputs == payload
    assert succeeded.outputs == payload
    assert failed.error == payload


def test_concurrent_mark_succeeded_from_threads_has_one_winner(store_engine: Engine) -> None:
    store = ExecutionStore(store_engine)
    _pending(store)
    workers = 8
    barrier = threading.Barrier(workers)

    def finish(n: int) -> bool:
        barrier.wait()
        return store.mark_succeeded("task-1", {"worker": n}, n, n, 0.0, 1)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(finish, range(workers)))
    assert results.count(True) == 1
    record = store.get("task-1")
    assert record is not None
    assert record.outputs == {"worker": results.index(True)}
    assert _count(store_engine, "task-1") == 1


def test_concurrent_first_writes_from_threads_create_one_row(store_engine: Engine) -> None:
    # No pending row: every thread races to insert it.
    store = ExecutionStore(store_engine)
    workers = 8
    barrier = threading.Barrier(workers)

    def finish(n: int) -> bool:
        barrier.wait()
        return store.mark_succeeded("task-new", {"worker": n})

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(finish, range(workers)))
    assert results.count(True) == 1
    assert _count(store_engine, "task-new") == 1


def _mark_succeeded_in_child(url: str, worker: int, barrier: Barrier, results: Queue[Any]) -> None:
    engine = make_engine(url)
    try:
        store = ExecutionStore(engine)
        barrier.wait()
        won = store.mark_succeeded("task-1", {"worker": worker}, worker, worker, 0.0, 1)
        results.put((worker, won))
    except Exception as exc:
        results.put((worker, f"{type(exc).__name__}: {exc}"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("pending_first", [True, False], ids=["pending", "no-row"])
def test_concurrent_mark_succeeded_from_processes_has_one_winner(
    store_engine: Engine, pending_first: bool, process_context: ProcessContext
) -> None:
    store = ExecutionStore(store_engine)
    if pending_first:
        _pending(store)
    url = store_engine.url.render_as_string(hide_password=False)
    workers = 5
    outcomes = dict(
        outcomes_of_processes_at_once(
            process_context, _mark_succeeded_in_child, [(url, n) for n in range(workers)]
        )
    )
    assert sorted(map(str, outcomes.values())) == ["False"] * (workers - 1) + ["True"]
    winner = next(n for n, won in outcomes.items() if won is True)
    record = store.get("task-1")
    assert record is not None
    assert record.outputs == {"worker": winner}
    assert record.input_tokens == winner
    assert _count(store_engine, "task-1") == 1
