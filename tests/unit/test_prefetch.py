"""A worker's prefetch weighed by the unfinished jobs of the batches it holds."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from kombu.common import QoS

from dspyq.tasks.batch import JOBS_HEADER
from dspyq.workers.prefetch import BatchPrefetch


class Hub:
    """The consumer's event loop as the prefetch sees it: callbacks to run soon."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], Any]] = []

    def call_soon(self, callback: Callable[[], Any]) -> None:
        self.soon.append(callback)


def _consumer(concurrency: int) -> Any:
    applied: list[int] = []
    qos = QoS(lambda prefetch_count: applied.append(prefetch_count), concurrency)
    qos.update()
    return SimpleNamespace(qos=qos, hub=Hub(), applied=applied)


def _receive(prefetch: BatchPrefetch, consumer: Any, task_id: str, jobs: int) -> None:
    request = SimpleNamespace(id=task_id, request_dict={JOBS_HEADER: jobs})
    prefetch._on_received(sender=consumer, request=request)


def test_a_batch_lowers_the_prefetch_by_its_extra_jobs_but_never_below_one() -> None:
    consumer, prefetch = _consumer(8), BatchPrefetch()
    _receive(prefetch, consumer, "b1", 5)
    assert consumer.qos.value == 4 and consumer.applied[-1] == 4  # applied at once
    _receive(prefetch, consumer, "b2", 20)
    assert consumer.qos.value == 1 and prefetch.lowered == 7


def test_lone_messages_leave_the_prefetch_alone() -> None:
    consumer, prefetch = _consumer(8), BatchPrefetch()
    _receive(prefetch, consumer, "lone", 1)
    request = SimpleNamespace(id="old-client", request_dict={})
    prefetch._on_received(sender=consumer, request=request)
    assert consumer.qos.value == 8 and prefetch.lowered == 0


def test_ending_jobs_raise_it_again_and_wake_the_loop_once_a_fetch_is_possible() -> None:
    consumer, prefetch = _consumer(8), BatchPrefetch()
    _receive(prefetch, consumer, "b1", 20)  # 19 extra jobs: lowered by 7, to 1
    for _ in range(12):  # 8 left: 7 extra, still all it can lower
        prefetch._on_job_end("b1")
    assert consumer.qos.value == 1 and consumer.hub.soon == []
    prefetch._on_job_end("b1")  # 7 left, on 8 slots: room for a second message
    assert consumer.qos.value == 2
    assert len(consumer.hub.soon) == 1
    consumer.hub.soon[0]()  # the loop applies it
    assert consumer.applied[-1] == 2
    prefetch._on_job_end("b1")
    assert consumer.qos.value == 3 and len(consumer.hub.soon) == 1  # no wake per job


def test_a_batch_that_ran_gives_back_all_it_took() -> None:
    consumer, prefetch = _consumer(8), BatchPrefetch()
    _receive(prefetch, consumer, "b1", 20)
    _receive(prefetch, consumer, "b2", 3)
    prefetch._on_postrun(task_id="b1")
    assert consumer.qos.value == 6  # b2's two extra jobs still weigh
    prefetch._on_revoked(request=SimpleNamespace(id="b2"))
    assert consumer.qos.value == 8 and prefetch.lowered == 0


def test_unlimited_prefetch_is_left_unlimited() -> None:
    consumer, prefetch = _consumer(0), BatchPrefetch()
    _receive(prefetch, consumer, "b1", 20)
    assert consumer.qos.value == 0 and prefetch.lowered == 0
