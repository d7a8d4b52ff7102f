"""One provider attempt of an LM call, through the process's provider gate.

The gate (:mod:`dspyq.lm.gate`) holds each attempt to the shared rate limit and circuit
breaker; a stream's attempt is its opening, up to the first chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar, cast

from dspyq.lm.cache import default_cache
from dspyq.lm.cache_peek import CachePeek
from dspyq.lm.call import PreparedCall
from dspyq.lm.gate import PeekingGate, estimate_tokens, provider_gate
from dspyq.lm.layered_cache import LayeredCache
from dspyq.lm.providers import HTTPProvider
from dspyq.lm.request import LMChunk, LMResponse

__all__ = ["agated", "aopen_stream", "cached_or_peek", "gated", "open_stream"]

T = TypeVar("T")


def cached_or_peek(call: PreparedCall) -> tuple[LMResponse | None, CachePeek | None]:
    """The cached answer, except that a shared layer's read may be left to the gate, to
    make in its own Redis round trip (see :mod:`dspyq.lm.cache_peek`)."""
    if call.key is None:
        return None, None
    cache = default_cache()
    can_peek = getattr(provider_gate(), "can_peek", None)
    if can_peek is not None and isinstance(cache, LayeredCache):
        return cache.get_or_peek(call.key, can_peek)
    return cache.get(call.key), None


def gated(
    provider: str,
    model: str,
    call: PreparedCall,
    send: Callable[[], T],
    peek: CachePeek | None = None,
) -> T:
    """``send()`` as one attempt at ``provider``, let through (or refused) by the gate."""
    if peek is None:
        call.report_redaction(provider, model)
        return provider_gate().run(provider, estimate_tokens(call.request), send)

    def sending() -> T:  # the request leaves only if the cache did not answer
        call.report_redaction(provider, model)
        return send()

    gate = cast(PeekingGate, provider_gate())
    return gate.run(provider, estimate_tokens(call.request), sending, peek)


async def agated(
    provider: str, model: str, call: PreparedCall, send: Callable[[], Awaitable[T]]
) -> T:
    """Async twin of :func:`gated` (no cache peek)."""
    call.report_redaction(provider, model)
    return await provider_gate().arun(provider, estimate_tokens(call.request), send)


def open_stream(
    client: HTTPProvider, provider: str, model: str, call: PreparedCall
) -> Iterator[LMChunk]:
    """The call's chunks; the gate sees the stream open: the request goes out and its
    first chunk comes back inside it, so the limiter counts it and the breaker judges
    the answer."""
    chunks = client.stream(call.request)
    first = gated(provider, model, call, lambda: next(chunks, None))
    if first is not None:
        yield first
        yield from chunks


async def aopen_stream(
    client: HTTPProvider, provider: str, model: str, call: PreparedCall
) -> AsyncIterator[LMChunk]:
    """Async twin of :func:`open_stream`; the provider's stream is closed at the end."""
    chunks = client.astream(call.request)
    try:
        first = await agated(provider, model, call, lambda: anext(chunks, None))
        if first is not None:
            yield first
            async for chunk in chunks:
                yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
