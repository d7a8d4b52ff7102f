"""``streamify``: turn a program into a generator of its LM's text chunks, then its result.

As DSPy's ``dspy.streamify`` without stream listeners: each chunk the LM streams is
yielded as it arrives (here as :class:`StreamChunk`, text and the id of the LM call
it belongs to) and the program's ``Prediction`` comes last
(``include_final_prediction_in_output_stream``). The program runs on a worker thread
inside ``context(send_stream=...)``, which every dspyq LM honours (see ``LM.forward``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Any

from dspyq.core.context import bind_context, context

__all__ = ["StreamChunk", "streamify"]

_DONE = object()


@dataclass(frozen=True)
class StreamChunk:
    """One piece of streamed LM text."""

    chunk: str
    call_id: str


def _produce(
    program: Callable[..., Any], args: Any, kwargs: Any, put: Callable[[Any], None]
) -> None:
    def send(text: str, call_id: str) -> None:
        put(StreamChunk(chunk=text, call_id=call_id))

    try:
        with context(send_stream=send):
            put(("result", program(*args, **kwargs)))
    except BaseException as exc:  # handed to the consumer, which raises it
        put(("error", exc))
    finally:
        put(_DONE)


def streamify(
    program: Callable[..., Any],
    status_message_provider: Any = None,
    stream_listeners: list[Any] | None = None,
    include_final_prediction_in_output_stream: bool = True,
    is_async_program: bool = False,
    async_streaming: bool = True,
) -> Callable[..., Any]:
    """A function returning an (async, by default) generator of chunks then the result."""
    if stream_listeners:
        raise NotImplementedError("stream_listeners are not supported yet; stream without them")
    if is_async_program:
        from dspyq.core.sync_async import run_async

        async_program = program
        program = lambda *a, **kw: run_async(async_program(*a, **kw))  # noqa: E731

    def sync_stream(*args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        items: queue.Queue[Any] = queue.Queue()
        worker = threading.Thread(
            target=bind_context(_produce), args=(program, args, kwargs, items.put), daemon=True
        )
        worker.start()
        yield from _drain(iter(items.get, _DONE), include_final_prediction_in_output_stream)
        worker.join()

    async def async_stream(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        worker = asyncio.create_task(
            asyncio.to_thread(_produce, program, args, kwargs, put)  # to_thread copies context
        )
        while (item := await items.get()) is not _DONE:
            for out in _drain(iter([item]), include_final_prediction_in_output_stream):
                yield out
        await worker

    return async_stream if async_streaming else sync_stream


def _drain(items: Any, include_final: bool) -> Generator[Any, None, None]:
    for item in items:
        if isinstance(item, StreamChunk):
            yield item
        elif item[0] == "error":
            raise item[1]
        elif include_final:
            yield item[1]
