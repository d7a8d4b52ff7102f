"""Streaming through the queue: a real worker streams from the fake LM into Redis, the client reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import dspyq
from dspyq.api_client.stream import Stream, StreamChunk
from dspyq.errors import AdapterParseError, InputError
from dspyq.testing.cluster import REDIS_URL, Cluster, running_cluster

pytestmark = pytest.mark.integration

ANSWER = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
CHUNK_DELAY = 0.05


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    with running_cluster(tmp_path, sqlite_url, latency=0.0) as cluster:
        cluster.fake_lm.configure(chunk_delay=CHUNK_DELAY)
        cluster.start_worker("w1", concurrency=2)
        yield cluster


def _qa() -> dspyq.Predict:
    return dspyq.Predict("question -> answer")


def test_stream_yields_chunks_as_they_arrive_then_the_prediction(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"answer": ANSWER})
    stream = cluster.client.stream(_qa(), lm="openai/m", question="Count?", timeout=30)

    arrivals: list[tuple[float, Any]] = []
    for item in stream:
        arrivals.append((time.monotonic(), item))

    *chunks, (_, prediction) = arrivals
    assert isinstance(prediction, dspyq.Prediction)
    assert prediction.answer == ANSWER
    assert all(isinstance(item, StreamChunk) and item.call == 0 for _, item in chunks)
    text = "".join(item.text for _, item in chunks)
    assert text == f"[[ ## answer ## ]]\n{ANSWER}\n\n[[ ## completed ## ]]"
    assert len(chunks) >= 8
    # One by one: the provider paces its chunks, and so do their arrivals here.
    spread = chunks[-1][0] - chunks[0][0]
    assert spread >= CHUNK_DELAY * (len(chunks) - 1) * 0.5

    # Recorded exactly as an unstreamed job: one execution row and its events.
    [row] = cluster.client.executions(stream.job.correlation_id)
    assert row.status == "succeeded" and row.outputs == {"answer": ANSWER}
    events = cluster.client.events(stream.job.correlation_id)
    types = [e.event_type for e in events]
    assert types[0] == "module_execution_start" and types[-1] == "module_execution_complete"
    [lm_request] = [e for e in events if e.event_type == "lm_request"]
    assert lm_request.data["stream"] is True and lm_request.data["output_tokens"] > 0
    # The stream lives under the deployment's key prefix and expires.
    key = f"{cluster.prefix}:stream:{stream.job.id}"
    assert 0 < redis.Redis.from_url(REDIS_URL).ttl(key) <= 3600


def test_a_late_reader_still_gets_every_chunk(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"answer": ANSWER})
    stream = cluster.client.stream(_qa(), lm="openai/m", question="Late?", timeout=30)
    first = list(stream)

    # A second reader of the finished job, as a client that subscribed late.
    again = list(Stream(cluster.client, stream.job, timeout=10))

    assert again == first
    assert isinstance(again[-1], dspyq.Prediction) and len(again) > 8


def test_async_stream(cluster: Cluster) -> None:
    cluster.fake_lm.answer_fields({"reasoning": "counting", "answer": ANSWER})

    async def collect() -> list[Any]:
        stream = cluster.client.astream(
            dspyq.ChainOfThought("question -> answer"), lm="openai/m", question="q", timeout=30
        )
        return [item async for item in stream]

    *chunks, prediction = asyncio.run(collect())
    assert len(chunks) >= 8
    assert "".join(c.text for c in chunks).startswith("[[ ## reasoning ## ]]\ncounting")
    assert prediction.answer == ANSWER and prediction.reasoning == "counting"


def test_a_failing_job_streams_each_call_then_raises_its_error(cluster: Cluster) -> None:
    cluster.fake_lm.answer("no markers and not JSON either")
    items: list[Any] = []
    with pytest.raises(AdapterParseError):
        for item in cluster.client.stream(_qa(), lm="openai/m", question="q", timeout=30):
            items.append(item)
    # The chat call and its JSON fallback, each its own numbered call.
    assert {c.call for c in items} == {0, 1}
    assert "".join(c.text for c in items if c.call == 1) == "no markers and not JSON either"


def test_multi_hop_programs_are_refused_before_anything_is_sent(cluster: Cluster) -> None:
    with pytest.raises(InputError, match="cannot be streamed"):
        cluster.client.stream(dspyq.MultiHopQA(), lm="openai/m", question="q")
