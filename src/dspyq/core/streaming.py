"""``streamify``: turn a program into a generator of what it streams, then its result.

As DSPy's ``dspy.streamify``. Without stream listeners each chunk the LM streams is
yielded as it arrives (here as :class:`StreamChunk`, text and the id of the LM call
it belongs to). With listeners (:class:`~dspyq.core.stream_listener.StreamListener`)
only the listened predictors' LM calls stream, and what is yielded is each listened
field's :class:`StreamResponse` pieces. Tool calls are announced with
:class:`StatusMessage` lines (``status_message_provider`` changes them). The program's
``Prediction`` comes last: always without listeners, and with them when
``include_final_prediction_in_output_stream`` or when no listener saw its field.

The program runs on a worker thread inside ``context(send_stream=...)``, which every
dspyq LM honours (see ``LM.forward``); chunks go to the listeners on the consuming side.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Any

from dspyq.core.context import bind_context, context, current
from dspyq.core.example import Prediction
from dspyq.core.stream_listener import StreamListener, find_predictor_for_stream_listeners
from dspyq.core.stream_messages import StatusMessage, StatusStreamingCallback

__all__ = ["StreamChunk", "apply_sync_streaming", "streamify"]

_DONE = object()


@dataclass(frozen=True)
class StreamChunk:
    """One piece of streamed LM text."""

    chunk: str
    call_id: str


@dataclass(frozen=True)
class _Tagged:
    """A chunk with the predictor that made the call (``None`` outside one) and the
    adapter in effect there, which tell the listeners whose text it is and its format."""

    chunk: StreamChunk
    predictor_id: int | None
    adapter: Any


def _produce(
    program: Callable[..., Any],
    args: Any,
    kwargs: Any,
    put: Callable[[Any], None],
    listeners: list[StreamListener],
    status: StatusStreamingCallback,
) -> None:
    def send(text: str, call_id: str) -> None:
        settings = current()
        predictor = settings.get("caller_predict")
        tag = id(predictor) if predictor is not None else None
        put(_Tagged(StreamChunk(chunk=text, call_id=call_id), tag, settings.adapter))

    callbacks = list(current().get("callbacks") or [])
    if not any(isinstance(callback, StatusStreamingCallback) for callback in callbacks):
        callbacks.append(status)
    settings = {"send_stream": send, "send_status": put, "stream_listeners": listeners}
    try:
        with context(callbacks=callbacks, **settings):
            result = program(*args, **kwargs)
        put(("result", result))
    except BaseException as exc:  # handed to the consumer, which raises it
        put(("error", exc))
    finally:
        put(_DONE)


class _Relay:
    """Turns what the program sends into what the stream yields (see module docstring)."""

    def __init__(self, listeners: list[StreamListener], by_predictor: Any, include: bool):
        self.listeners, self.by_predictor, self.include_final = listeners, by_predictor, include

    def outputs(self, item: Any) -> list[Any]:
        if isinstance(item, _Tagged):
            if not self.by_predictor:
                return [item.chunk]
            listening = self.by_predictor.get(item.predictor_id, [])
            pieces = (listener.receive(item.chunk.chunk, item.adapter) for listener in listening)
            return [piece for piece in pieces if piece is not None]
        if isinstance(item, StatusMessage):
            return [item]
        if item[0] == "error":
            raise item[1]
        result = item[1]
        if not isinstance(result, Prediction):
            return [result]
        adapter = current().adapter
        tail: list[Any] = [
            piece for lst in self.listeners if (piece := lst.finalize(adapter)) is not None
        ]
        if self.include_final or self._nothing_streamed():
            tail.append(result)
        return tail

    def _nothing_streamed(self) -> bool:
        listeners = self.listeners
        return (
            not listeners
            or any(listener.cache_hit for listener in listeners)
            or not any(listener.stream_start for listener in listeners)
        )


def streamify(
    program: Callable[..., Any],
    status_message_provider: Any = None,
    stream_listeners: list[StreamListener] | None = None,
    include_final_prediction_in_output_stream: bool = True,
    is_async_program: bool = False,
    async_streaming: bool = True,
) -> Callable[..., Any]:
    """A function returning an (async, by default) generator of chunks then the result."""
    listeners = list(stream_listeners or [])
    by_predictor = find_predictor_for_stream_listeners(program, listeners) if listeners else {}
    status = StatusStreamingCallback(status_message_provider)
    if is_async_program or inspect.iscoroutinefunction(program):
        from dspyq.core.sync_async import run_async

        # As DSPy: an async program module runs through ``acall``.
        async_program = getattr(program, "acall", program) if is_async_program else program
        program = lambda *a, **kw: run_async(async_program(*a, **kw))  # noqa: E731

    def relay() -> _Relay:
        return _Relay(listeners, by_predictor, include_final_prediction_in_output_stream)

    def sync_stream(*args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        items: queue.Queue[Any] = queue.Queue()
        worker = threading.Thread(
            target=bind_context(_produce),
            args=(program, args, kwargs, items.put, listeners, status),
            daemon=True,
        )
        worker.start()
        turn = relay()
        for item in iter(items.get, _DONE):
            yield from turn.outputs(item)
        worker.join()

    async def async_stream(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        worker = asyncio.create_task(  # to_thread copies the context
            asyncio.to_thread(_produce, program, args, kwargs, put, listeners, status)
        )
        turn = relay()
        while (item := await items.get()) is not _DONE:
            for out in turn.outputs(item):
                yield out
        await worker

    return async_stream if async_streaming else sync_stream


def apply_sync_streaming(async_generator: AsyncGenerator[Any, None]) -> Generator[Any, None, None]:
    """The items of ``async_generator`` as a plain generator (it runs on its own thread and
    event loop, in the caller's configuration), its exception raised here."""
    items: queue.Queue[Any] = queue.Queue()

    async def pump() -> None:
        try:
            async for item in async_generator:
                items.put(("item", item))
        except BaseException as exc:  # re-raised on the consuming side
            items.put(("error", exc))
        finally:
            items.put(_DONE)

    worker = threading.Thread(target=bind_context(asyncio.run), args=(pump(),), daemon=True)
    worker.start()
    for kind, value in iter(items.get, _DONE):
        if kind == "error":
            raise value
        yield value
