"""GroupCommit: writes that arrive while one is in progress are made together."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from dspyq.store.group_commit import GroupCommit


class _Writes:
    """Records every group written; the first write holds until released."""

    def __init__(self, fail_on: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.groups: list[list[int]] = []
        self.singles: list[int] = []
        self.first_started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def many(self, items: Sequence[int]) -> list[int]:
        self.groups.append(list(items))
        if self.fail_on & set(items):
            raise ValueError("a bad item spoils the group")
        return [item * 10 for item in items]

    def one(self, item: int) -> int:
        self.singles.append(item)
        if not self.first_started.is_set():
            self.first_started.set()
            assert self.release.wait(10)
        if item in self.fail_on:
            raise ValueError(f"bad item {item}")
        return item * 10


def _run_while_first_blocks(writes: _Writes, items: list[int]) -> list[object]:
    """Item 0 is written alone and holds the writer; the rest queue behind it."""
    commit: GroupCommit[int, int] = GroupCommit(writes.many, writes.one, name="test")

    def call(item: int) -> object:
        try:
            return commit(item)
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(len(items)) as pool:
        first = pool.submit(call, items[0])
        assert writes.first_started.wait(10)
        rest = [pool.submit(call, item) for item in items[1:]]
        while len(commit._queue) < len(items) - 1:  # every other caller is waiting
            threading.Event().wait(0.005)
        writes.release.set()
        return [first.result(10), *(future.result(10) for future in rest)]


def test_a_lone_write_is_made_at_once_by_its_caller() -> None:
    writes = _Writes()
    writes.first_started.set()  # nothing to hold
    commit: GroupCommit[int, int] = GroupCommit(writes.many, writes.one, name="test")
    assert commit(7) == 70
    assert writes.singles == [7] and writes.groups == []


def test_writes_that_wait_behind_one_go_together_and_each_gets_its_result() -> None:
    writes = _Writes()
    results = _run_while_first_blocks(writes, list(range(6)))
    assert results == [0, 10, 20, 30, 40, 50]
    assert writes.singles == [0]
    assert writes.groups == [[1, 2, 3, 4, 5]]  # one write for all that queued


def test_a_failing_group_is_written_item_by_item_and_only_the_bad_item_fails() -> None:
    writes = _Writes(fail_on={3})
    results = _run_while_first_blocks(writes, list(range(6)))
    assert results[:3] == [0, 10, 20] and results[4:] == [40, 50]
    assert isinstance(results[3], ValueError) and "bad item 3" in str(results[3])
    assert sorted(writes.singles) == [0, 1, 2, 3, 4, 5]


def test_groups_are_capped() -> None:
    writes = _Writes()
    commit: GroupCommit[int, int] = GroupCommit(writes.many, writes.one, name="t", max_group=2)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(commit, 0)
        assert writes.first_started.wait(10)
        rest = [pool.submit(commit, i) for i in range(1, 6)]
        while len(commit._queue) < 5:
            threading.Event().wait(0.005)
        writes.release.set()
        assert [first.result(10), *(f.result(10) for f in rest)] == [0, 10, 20, 30, 40, 50]
    assert all(len(group) <= 2 for group in writes.groups)


def test_many_threads_never_stall_and_every_write_is_made_once() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def many(items: Sequence[int]) -> list[int]:
        with lock:
            seen.extend(items)
        return list(items)

    def one(item: int) -> int:
        return many([item])[0]

    commit: GroupCommit[int, int] = GroupCommit(many, one, name="stress")
    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(commit, range(2000), timeout=60)) == list(range(2000))
    assert sorted(seen) == list(range(2000))


def test_an_error_of_the_lone_writer_reaches_its_caller() -> None:
    def one(item: int) -> int:
        raise ValueError("store down")

    commit: GroupCommit[int, int] = GroupCommit(lambda items: [], one, name="t")
    with pytest.raises(ValueError, match="store down"):
        commit(1)
    with pytest.raises(ValueError, match="store down"):
        commit(2)  # the turn was given back: a second call is not stuck
