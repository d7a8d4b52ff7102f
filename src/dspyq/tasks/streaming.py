"""A streamed job's text, published to a Redis stream as the worker receives it.

The worker's LM calls run inside ``context(send_stream=publisher)``, so each text chunk
from the provider is appended (XADD) to ``<key_prefix>:stream:<task_id>``, and the job
ends the stream with an ``end`` entry saying how it finished. A Redis stream, unlike
pub/sub, keeps its entries: a client that starts reading late still gets every chunk.
The key expires :data:`STREAM_TTL_SECONDS` after the last write.

Entries are flat string maps: ``{"kind": "chunk", "text": ..., "call": "0"}`` (``call``
numbers the job's LM calls in order: a JSON fallback or a second predictor is a new
call) and ``{"kind": "end", "status": "succeeded" | "failed", "error": ...}``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import redis
from celery.exceptions import Ignore, Retry

from dspyq.core.context import context
from dspyq.tasks.protocol import CHUNK, END, stream_key

if TYPE_CHECKING:
    from dspyq.tasks.context import WorkerContext

__all__ = ["CHUNK", "END", "STREAM_TTL_SECONDS", "ChunkPublisher", "publishing", "stream_key"]

logger = logging.getLogger(__name__)

STREAM_TTL_SECONDS = 3600
"""How long a job's stream stays readable after its last entry."""

_ERROR_CHARS = 500


class ChunkPublisher:
    """Appends a job's chunks and its end marker to its Redis stream.

    A publishing failure is logged and the job goes on: a reader that misses the end
    marker still finishes once the job has a result (see :mod:`dspyq.api_client.stream`).
    """

    def __init__(self, client: redis.Redis, key: str, ttl: int = STREAM_TTL_SECONDS) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str, call_id: str) -> None:
        """The ``send_stream`` hook: one text chunk of the LM call ``call_id``."""
        with self._lock:
            index = self._calls.setdefault(call_id, len(self._calls))
        self._append({"kind": CHUNK, "text": text, "call": str(index)})

    def end(self, status: str, error: str | None = None) -> None:
        """Mark the stream finished, with how the job ended."""
        fields = {"kind": END, "status": status}
        if error:
            fields["error"] = error[:_ERROR_CHARS]
        self._append(fields)

    def _append(self, fields: dict[str, str]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.key, fields)  # type: ignore[arg-type]
            pipe.expire(self.key, self.ttl)
            pipe.execute()
        except redis.RedisError:
            logger.exception("could not publish to stream %s", self.key)


@contextmanager
def publishing(env: WorkerContext, task_id: str) -> Iterator[ChunkPublisher]:
    """Stream the LM text of the block's calls; end the stream with how the block ended.

    A job that re-queues itself (rate-limit wait, provider fallback) leaves its stream
    open: the next delivery has the same task id and goes on writing to it.
    """
    publisher = ChunkPublisher(env.stream_redis(), stream_key(env.settings.key_prefix, task_id))
    try:
        with context(send_stream=publisher):
            yield publisher
    except (Ignore, Retry):
        raise
    except BaseException as exc:
        publisher.end("failed", f"{type(exc).__name__}: {exc}")
        raise
    publisher.end("succeeded")
