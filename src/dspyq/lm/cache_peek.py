"""A shared-cache read that the provider gate makes in its own Redis round trip.

In a worker, an LM call that misses the in-process cache used to ask Redis twice before
reaching the provider: once for the L2 answer, once for the rate limiter and circuit
breaker. Both live in the same Redis, so the read can travel with the gate's request:
the layered cache hands the LM a :class:`CachePeek` instead of reading Redis itself,
and the gate puts ``GET`` beside its limiter and breaker scripts in one redis-py
pipeline (the scripts know nothing of the cache). When the answer is there, the
limiter's grant, if any, is taken back, so a cached answer spends no rate-limit budget.
A hit is given back to the cache (:attr:`CachePeek.on_hit`: counted, copied to the
layers above) and served as a cached answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dspyq.lm.request import LMResponse

__all__ = ["CachePeek"]


@dataclass
class CachePeek:
    """The L2 read of one call, to be made by a gate on the same Redis (``redis``)."""

    redis: Any
    """The Redis client of the layer: a gate on another server cannot take the read."""
    key: str
    """The entry's Redis key."""
    read: Callable[[bytes | str], LMResponse | None]
    """The answer an entry's raw value stands for (None: unreadable, and dropped)."""
    on_hit: Callable[[LMResponse], None] = field(default=lambda _value: None)
    hit: LMResponse | None = None
    """Set by the gate when the entry was there: the call is answered with it."""
    usable: bool = True
    """False once the entry could not be read (Redis refused the GET): not asked again."""

    def found(self, raw: bytes | str | None) -> bool:
        """Take the entry's raw value (None: absent); True if it answers the call."""
        if raw is None:
            return False
        value = self.read(raw)
        if value is None:
            return False
        self.hit = value
        self.on_hit(value)
        return True
