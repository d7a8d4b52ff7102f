"""Attempts recorded with their events in one transaction: same rules as the row stores."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine

from dspyq.events import Event
from dspyq.store import EventStore, ExecutionStore
from dspyq.store.attempts import AfterCommit, AttemptRecorder, PendingStart, pending_start

pytestmark = pytest.mark.integration


def _start(recorder: AttemptRecorder, task_id: str = "t1", node: str = "n1", **kw: Any) -> Any:
    def event(attempt: int) -> Event:
        return Event(
            event_id=f"{task_id}:start:{attempt}",
            event_type="module_execution_start",
            correlation_id="c1",
            data={"attempt": attempt},
        )

    return recorder.start(task_id, node, event, correlation_id="c1", **kw)


def _complete(task_id: str = "t1") -> Event:
    return Event(
        event_id=f"{task_id}:complete", event_type="module_execution_complete", correlation_id="c1"
    )


def _event_ids(engine: Engine) -> list[str]:
    return [e.event_id for e in EventStore(engine).by_correlation("c1")]


def test_start_creates_the_described_row_and_its_start_event(store_engine: Engine) -> None:
    recorder = AttemptRecorder(store_engine)
    begun = _start(
        recorder, program="m:Predict", module_type="Predict", lm="openai/x", inputs={"q": "?"}
    )
    assert begun.attempt == 1 and not begun.already_succeeded
    row = ExecutionStore(store_engine).get("t1")
    assert row is not None
    assert (row.status, row.attempts, row.node, row.correlation_id) == ("running", 1, "n1", "c1")
    assert (row.program, row.module_type, row.lm, row.inputs) == (
        "m:Predict",
        "Predict",
        "openai/x",
        {"q": "?"},
    )
    assert _event_ids(store_engine) == ["t1:start:1"]


def test_a_redelivered_attempt_counts_and_keeps_the_description(store_engine: Engine) -> None:
    ExecutionStore(store_engine).create_pending("t1", "c1", "prog", "Predict", "openai/x", {"a": 1})
    recorder = AttemptRecorder(store_engine)
    assert _start(recorder, node="n1", lm="other/y").attempt == 1
    assert _start(recorder, node="n2", lm="other/y").attempt == 2
    row = ExecutionStore(store_engine).get("t1")
    assert row is not None
    assert (row.attempts, row.node, row.lm, row.inputs) == (2, "n2", "openai/x", {"a": 1})
    assert _event_ids(store_engine) == ["t1:start:1", "t1:start:2"]


def test_the_first_success_wins_and_events_are_stored_once(store_engine: Engine) -> None:
    recorder = AttemptRecorder(store_engine)
    _start(recorder)
    first = recorder.succeed(
        "t1",
        {"answer": "A"},
        [_complete()],
        input_tokens=3,
        output_tokens=4,
        cost_usd=0.5,
        lm_calls=1,
        duration_ms=12.5,
        node="n1",
    )
    again = recorder.succeed("t1", {"answer": "B"}, [_complete()], duration_ms=1.0, node="n9")
    assert (first, again) == (True, False)
    row = ExecutionStore(store_engine).get("t1")
    assert row is not None
    assert row.status == "succeeded" and row.outputs == {"answer": "A"}
    assert (row.input_tokens, row.output_tokens, row.cost_usd, row.lm_calls) == (3, 4, 0.5, 1)
    assert (row.duration_ms, row.node) == (12.5, "n1")
    assert row.finished_at is not None
    assert _event_ids(store_engine) == ["t1:start:1", "t1:complete"]


def test_a_succeeded_execution_is_returned_not_restarted(store_engine: Engine) -> None:
    recorder = AttemptRecorder(store_engine)
    _start(recorder)
    recorder.succeed("t1", {"answer": "A"}, duration_ms=1.0)
    begun = _start(recorder, node="n2")
    assert begun.already_succeeded and begun.record.outputs == {"answer": "A"}
    row = ExecutionStore(store_engine).get("t1")
    assert row is not None and (row.status, row.attempts, row.node) == ("succeeded", 1, "n1")
    assert _event_ids(store_engine) == ["t1:start:1"]


def test_a_failed_execution_stays_failed_until_a_success(store_engine: Engine) -> None:
    executions = ExecutionStore(store_engine)
    recorder = AttemptRecorder(store_engine)
    _start(recorder)
    executions.mark_failed("t1", {"type": "ProviderError"})
    begun = _start(recorder, node="n2")
    assert begun.attempt == 1 and not begun.already_succeeded
    row = executions.get("t1")
    assert row is not None and (row.status, row.attempts) == ("failed", 1)
    assert recorder.succeed("t1", {"answer": "late"}, duration_ms=2.0) is True
    row = executions.get("t1")
    assert row is not None
    assert (row.status, row.error, row.outputs, row.node) == (
        "succeeded",
        None,
        {"answer": "late"},
        "n1",
    )


def test_success_of_a_task_never_started_creates_its_row(store_engine: Engine) -> None:
    recorder = AttemptRecorder(store_engine)
    assert recorder.succeed("t7", {"x": 1}, duration_ms=3.0, correlation_id="c7") is True
    row = ExecutionStore(store_engine).get("t7")
    assert row is not None
    assert (row.status, row.attempts, row.correlation_id) == ("succeeded", 1, "c7")


@pytest.mark.parametrize("grouped", [False, True], ids=["alone", "grouped"])
def test_racing_workers_record_one_row_and_one_success(store_engine: Engine, grouped: bool) -> None:
    recorder = AttemptRecorder(store_engine, grouped=grouped)

    def attempt(n: int) -> bool:
        _start(recorder, node=f"n{n}")
        return recorder.succeed("t1", {"by": n}, [_complete()], duration_ms=1.0, node=f"n{n}")

    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(attempt, range(8)))
    assert wins.count(True) == 1
    row = ExecutionStore(store_engine).get("t1")
    assert row is not None and row.outputs == {"by": wins.index(True)}
    assert _event_ids(store_engine).count("t1:complete") == 1


def test_grouped_starts_and_successes_of_many_threads_are_each_recorded_once(
    store_engine: Engine,
) -> None:
    recorder = AttemptRecorder(store_engine, grouped=True)
    executions = ExecutionStore(store_engine)
    for n in range(0, 40, 10):  # these already succeeded: a start must leave them alone
        _start(recorder, task_id=f"t{n}")
        recorder.succeed(f"t{n}", {"n": -1}, duration_ms=1.0)

    def job(n: int) -> tuple[bool, bool]:
        begun = _start(recorder, task_id=f"t{n}", node=f"n{n}")
        if begun.already_succeeded:
            return True, False
        first = recorder.succeed(
            f"t{n}", {"n": n}, [_complete(f"t{n}")], duration_ms=1.0, node=f"n{n}"
        )
        return False, first

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(job, range(40)))
    assert [n for n, (done, _) in enumerate(outcomes) if done] == [0, 10, 20, 30]
    assert all(first for done, first in outcomes if not done)
    rows = {row.task_id: row for row in executions.list(status="succeeded", limit=100)}
    assert len(rows) == 40
    assert all(rows[f"t{n}"].outputs == {"n": -1 if n % 10 == 0 else n} for n in range(40))
    ids = _event_ids(store_engine)
    assert len(ids) == len(set(ids))  # every event once
    assert sum(1 for i in ids if i.endswith(":complete")) == 36


@pytest.mark.parametrize("grouped", [False, True], ids=["alone", "grouped"])
def test_after_commit_runs_once_the_success_is_committed(
    store_engine: Engine, grouped: bool
) -> None:
    recorder = AttemptRecorder(store_engine, grouped=grouped)
    executions = ExecutionStore(store_engine)
    calls: list[list[str]] = []
    lock = threading.Lock()

    def publish(items: list[str]) -> None:
        # Every item's success is visible to other connections by now.
        assert all(executions.get(item).status == "succeeded" for item in items)  # type: ignore[union-attr]
        with lock:
            calls.append(items)

    def job(n: int) -> bool:
        _start(recorder, task_id=f"t{n}")
        after = AfterCommit(publish, f"t{n}")
        return recorder.succeed(f"t{n}", {"n": n}, duration_ms=1.0, after=after)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(job, range(24)))
    published = [item for items in calls for item in items]
    assert sorted(published) == sorted(f"t{n}" for n in range(24))  # each once
    if not grouped:
        assert all(len(items) == 1 for items in calls)


def test_a_failing_after_commit_fails_only_its_callers_and_keeps_the_records(
    store_engine: Engine,
) -> None:
    recorder = AttemptRecorder(store_engine, grouped=True)
    executions = ExecutionStore(store_engine)
    published: list[str] = []

    def publish(items: list[str]) -> None:
        if any(item.startswith("bad") for item in items):
            raise RuntimeError("result backend down")
        published.extend(items)

    def job(task_id: str) -> str:
        _start(recorder, task_id=task_id)
        try:
            recorder.succeed(task_id, {}, duration_ms=1.0, after=AfterCommit(publish, task_id))
        except RuntimeError as exc:
            return str(exc)
        return "ok"

    names = [f"{'bad' if n % 4 == 0 else 'good'}{n}" for n in range(16)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = dict(zip(names, pool.map(job, names), strict=True))
    assert {name for name, outcome in outcomes.items() if outcome != "ok"} == {
        name for name in names if name.startswith("bad")
    }
    assert sorted(published) == sorted(name for name in names if name.startswith("good"))
    assert all(executions.get(name).status == "succeeded" for name in names)  # type: ignore[union-attr]


def _pending(task_id: str, node: str = "nb") -> PendingStart:
    def event(attempt: int) -> Event:
        return Event(
            event_id=f"{task_id}:start:{attempt}",
            event_type="module_execution_start",
            correlation_id="c1",
        )

    return pending_start(task_id, node, event, correlation_id="c1")


def test_a_batch_of_starts_is_one_upsert_with_each_rule_kept(store_engine: Engine) -> None:
    recorder = AttemptRecorder(store_engine)
    executions = ExecutionStore(store_engine)
    _start(recorder, task_id="again")
    _start(recorder, task_id="done")
    recorder.succeed("done", {"answer": "A"}, duration_ms=1.0)
    _start(recorder, task_id="broken")
    executions.mark_failed("broken", {"type": "ProviderError"})
    names = ["new", "again", "done", "broken"]
    begun = recorder.begin_many([_pending(name) for name in names])
    assert [(b.attempt, b.already_succeeded) for b in begun] == [
        (1, False),
        (2, False),
        (1, True),
        (1, False),
    ]
    assert begun[2].record is not None and begun[2].record.outputs == {"answer": "A"}
    statuses = {name: executions.get(name) for name in names}
    assert {name: (row.status, row.attempts) for name, row in statuses.items() if row} == {
        "new": ("running", 1),
        "again": ("running", 2),
        "done": ("succeeded", 1),
        "broken": ("failed", 1),
    }
    ids = [e.event_id for e in EventStore(store_engine).by_correlation("c1")]
    assert sorted(ids) == sorted(
        ["again:start:1", "done:start:1", "broken:start:1", "new:start:1", "again:start:2"]
    )


def test_a_task_id_twice_in_one_batch_of_starts_counts_two_attempts(store_engine: Engine) -> None:
    recorder = AttemptRecorder(store_engine)
    begun = recorder.begin_many([_pending("twice"), _pending("other"), _pending("twice")])
    assert [b.attempt for b in begun] == [1, 1, 2]
