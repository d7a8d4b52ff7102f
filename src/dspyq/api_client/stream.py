"""Streaming a job: its LM text chunk by chunk as the worker receives it, then its Prediction.

``for item in client.stream(program, lm=..., **inputs)`` yields :class:`StreamChunk`
objects (``.text``) while the worker's LM call streams, and the job's
:class:`~dspyq.Prediction` last, as ``dspy.streamify`` ends with the Prediction.
``client.astream(...)`` is the ``async for`` twin.

The worker appends chunks to a Redis stream (:mod:`dspyq.tasks.streaming`); this side
reads it with ``XREAD BLOCK`` from the first entry, so subscribing late loses nothing.
The stream ends at its ``end`` entry; should that never come (a worker died, Redis
dropped a write), the reader also stops once the job itself has finished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dspyq.api_client.submit import build_request, send
from dspyq.core.example import Prediction
from dspyq.errors import InputError, JobTimeoutError
from dspyq.resilience.redis_client import async_redis_from_url, redis_errors, redis_from_url
from dspyq.tasks.protocol import CHUNK, END, EXECUTE_TASK, stream_key

if TYPE_CHECKING:
    from dspyq.api_client.client import Client
    from dspyq.api_client.job import Job
    from dspyq.core.module import Module

__all__ = ["AsyncStream", "Stream", "StreamChunk", "start_stream"]

_BLOCK_MS = 500
_BATCH = 256
_FINISHED = frozenset({"succeeded", "failed", "cancelled"})

Entry = tuple[str, dict[str, str]]


@dataclass(frozen=True)
class StreamChunk:
    """A piece of LM output text, in the order the provider sent it.

    ``call`` numbers the job's LM calls (0, 1, ...): a program with two predictors,
    or a reply retried through the JSON fallback, streams each call in turn.
    """

    text: str
    call: int = 0


def start_stream(client: Client, program: Module | str, lm: str | None, **kwargs: Any) -> Job:
    """Submit ``program`` as a streamed job; the arguments are :meth:`Client.submit`'s."""
    inputs = dict(kwargs)
    options = {
        k: inputs.pop(k)
        for k in ("fallbacks", "lm_kwargs", "correlation_id", "privacy")
        if k in inputs
    }
    request, task_name = build_request(
        client,
        program,
        lm,
        options.get("fallbacks", ()),
        options.get("lm_kwargs"),
        options.get("correlation_id"),
        inputs,
        spec=None,
        privacy=options.get("privacy"),
    )
    if task_name != EXECUTE_TASK:
        shown = program if isinstance(program, str) else type(program).__name__
        raise InputError(
            f"{shown} runs as several hops and cannot be streamed; "
            "stream a single module (Predict, ChainOfThought, ...)"
        )
    return send(client, task_name, request.model_copy(update={"stream": True}))


def _decode(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _entries(reply: Any) -> list[Entry]:
    """``XREAD``'s reply for one key as (id, fields) pairs with text keys and values."""
    out: list[Entry] = []
    for _key, items in reply or []:
        for entry_id, fields in items:
            out.append((_decode(entry_id), {_decode(k): _decode(v) for k, v in fields.items()}))
    return out


class _Reader:
    """What the sync and async streams share: where they are and what an entry means."""

    def __init__(self, job: Job, key: str, timeout: float | None) -> None:
        self.job = job
        self.key = key
        self.last_id = "0-0"
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self.ended = False

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise JobTimeoutError(
                f"job {self.job.id} did not finish streaming within {self.timeout} s "
                f"(status: {self.job.status})",
                correlation_id=self.job.correlation_id,
                context={"task_id": self.job.id, "timeout": self.timeout},
            )
        return left

    def block_ms(self) -> int:
        left = self.remaining()
        return _BLOCK_MS if left is None else max(1, min(_BLOCK_MS, int(left * 1000)))

    def chunks(self, entries: list[Entry]) -> list[StreamChunk]:
        """The chunks among ``entries``; notes the end marker."""
        found = []
        for entry_id, fields in entries:
            self.last_id = entry_id
            kind = fields.get("kind")
            if kind == CHUNK:
                found.append(StreamChunk(fields.get("text", ""), int(fields.get("call", 0))))
            elif kind == END:
                self.ended = True
        return found


class Stream:
    """Iterate for :class:`StreamChunk` items, then the job's Prediction (see module doc).

    A failed job raises its error where the Prediction would come, as ``Job.result``
    does. ``job`` is the submitted :class:`~dspyq.Job` (its id and correlation id).
    """

    def __init__(self, client: Client, job: Job, timeout: float | None = None) -> None:
        self.job = job
        self._client = client
        self._reader = _Reader(job, stream_key(client.settings.key_prefix, job.id), timeout)

    def __repr__(self) -> str:
        return f"Stream(job={self.job!r})"

    def __iter__(self) -> Iterator[StreamChunk | Prediction]:
        reader = self._reader
        url = self._client.settings.effective_redis_url
        connection = redis_from_url(url)
        try:
            while not reader.ended:
                with redis_errors("reading a job's stream", url=url, key=reader.key):
                    reply = connection.xread(
                        {reader.key: reader.last_id}, count=_BATCH, block=reader.block_ms()
                    )
                entries = _entries(reply)
                yield from reader.chunks(entries)
                if not entries and self.job.status in _FINISHED:
                    # No end marker, but the job is over: take what is left and stop.
                    with redis_errors("reading a job's stream", url=url, key=reader.key):
                        tail = connection.xread({reader.key: reader.last_id}, count=_BATCH)
                    yield from reader.chunks(_entries(tail))
                    break
        finally:
            connection.close()
        yield self.job.result(timeout=reader.remaining())


class AsyncStream:
    """The ``async for`` twin of :class:`Stream`.

    The job is submitted (in a thread) when iteration starts; ``job`` is None until then.
    """

    def __init__(
        self, client: Client, submit: Callable[[], Job], timeout: float | None = None
    ) -> None:
        self.job: Job | None = None
        self._client = client
        self._submit = submit
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"AsyncStream(job={self.job!r})"

    async def __aiter__(self) -> AsyncIterator[StreamChunk | Prediction]:
        job = self.job = await asyncio.to_thread(self._submit)
        reader = _Reader(job, stream_key(self._client.settings.key_prefix, job.id), self._timeout)
        url = self._client.settings.effective_redis_url
        connection = async_redis_from_url(url)
        try:
            while not reader.ended:
                with redis_errors("reading a job's stream", url=url, key=reader.key):
                    reply = await connection.xread(
                        {reader.key: reader.last_id}, count=_BATCH, block=reader.block_ms()
                    )
                entries = _entries(reply)
                for chunk in reader.chunks(entries):
                    yield chunk
                if not entries and await asyncio.to_thread(lambda: job.status) in _FINISHED:
                    with redis_errors("reading a job's stream", url=url, key=reader.key):
                        tail = await connection.xread({reader.key: reader.last_id}, count=_BATCH)
                    for chunk in reader.chunks(_entries(tail)):
                        yield chunk
                    break
        finally:
            await connection.aclose()
        yield await job.aresult(timeout=reader.remaining())
