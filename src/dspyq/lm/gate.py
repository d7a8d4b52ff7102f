"""The provider gate: what every HTTP attempt of an LM passes through before it is sent.

In a plain process there is no gate and calls go straight out. A worker binds one for
each job in the runtime configuration (``context(lm_gate=...)``, see
:mod:`dspyq.core.context`) that holds each attempt to the pool's shared rate limit and
the provider's shared circuit breaker (``dspyq.resilience.gate.RedisProviderGate``).
The LM calls the gate inside its retry loop, so every attempt is limited and judged,
and never for an answer served from the cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from dspyq.core.context import setting
from dspyq.lm.cache_peek import CachePeek
from dspyq.lm.request import LMRequest

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "GATE_KEY",
    "NoGate",
    "PeekingGate",
    "ProviderGate",
    "estimate_tokens",
    "provider_gate",
]

T = TypeVar("T")

DEFAULT_OUTPUT_TOKENS = 256
"""Output tokens assumed per choice when a call sets no ``max_tokens``."""

_NON_TEXT_PART_TOKENS = 256
"""Tokens assumed for a message part that is not text (an image): its bytes say little."""


@runtime_checkable
class ProviderGate(Protocol):
    """Lets one provider attempt through, or refuses it with a dspyq error.

    ``estimated_tokens`` is the attempt's expected size (:func:`estimate_tokens`); a gate
    that learns the real usage from the result (an ``LMResponse``) may correct it.
    """

    def run(self, provider: str, estimated_tokens: int, fn: Callable[[], T]) -> T: ...

    async def arun(
        self, provider: str, estimated_tokens: int, fn: Callable[[], Awaitable[T]]
    ) -> T: ...


class PeekingGate(ProviderGate, Protocol):
    """A gate that can also read a shared cache entry in its own round trip (see
    :mod:`dspyq.lm.cache_peek`): ``run`` then answers from the entry when it is there."""

    def can_peek(self, peek: CachePeek) -> bool: ...

    def run(
        self,
        provider: str,
        estimated_tokens: int,
        fn: Callable[[], T],
        peek: CachePeek | None = None,
    ) -> T: ...


class NoGate:
    """The default: every attempt goes straight to the provider."""

    def run(self, provider: str, estimated_tokens: int, fn: Callable[[], T]) -> T:
        return fn()

    async def arun(self, provider: str, estimated_tokens: int, fn: Callable[[], Awaitable[T]]) -> T:
        return await fn()


GATE_KEY = "lm_gate"
"""The runtime configuration key a worker binds its gate under."""

_NO_GATE = NoGate()  # stateless: one instance serves every unbound call


def provider_gate() -> ProviderGate:
    """The gate bound here (a pass-through :class:`NoGate` unless one is bound)."""
    gate: ProviderGate | None = setting(GATE_KEY)
    return _NO_GATE if gate is None else gate


def estimate_tokens(request: LMRequest) -> int:
    """A cheap guess of a request's tokens, for the limiter before the provider counts them.

    About four characters per prompt token, plus ``max_tokens`` (or
    :data:`DEFAULT_OUTPUT_TOKENS`) for each of the ``n`` choices.
    """
    chars = 0
    for message in request.messages:
        chars += _content_chars(message.get("content"))
    params = request.params
    max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
    output = int(max_tokens) if max_tokens else DEFAULT_OUTPUT_TOKENS
    return (chars + 3) // 4 + output * request.n


def _content_chars(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"])
            elif isinstance(part, str):
                total += len(part)
            else:
                total += 4 * _NON_TEXT_PART_TOKENS
        return total
    return len(str(content))
