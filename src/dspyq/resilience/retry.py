"""Retry with exponential backoff and full jitter, honouring the server's Retry-After.

One policy object serves sync calls, async calls and streams. Whether an error is
worth retrying is read from the error itself (``DspyqError.retry_strategy``): 429,
5xx, timeouts, connection errors and malformed answers are; bad requests,
authentication failures and a spent quota (``insufficient_quota``) fail at once.
When the failed answer's rate-limit headers said a budget was spent (remaining 0,
kept in the error's ``rate_limit`` context), the retry waits at least for its reset.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from dspyq.errors import DspyqError, ProviderError

T = TypeVar("T")

logger = logging.getLogger("dspyq.resilience.retry")

# One generator for every policy that is given none: seeding a new one from the OS
# cost each LM (built per job) more than the rest of its construction.
_SHARED_RNG = random.Random()

RetryCallback = Callable[[DspyqError, int, float], None]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    Returns None for a missing or unreadable value, and never a negative number.
    Fractional seconds are accepted (some servers, and our fake one, send them).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def budget_reset(error: BaseException) -> float:
    """Seconds until the spent rate-limit budget the error's answer reported resets (or 0)."""
    context = getattr(error, "context", None)
    limits = context.get("rate_limit") if isinstance(context, dict) else None
    if not isinstance(limits, dict):
        return 0.0
    waits = [
        float(limits.get(f"reset_{kind}") or 0.0)
        for kind in ("requests", "tokens")
        if limits.get(f"remaining_{kind}") == 0
    ]
    return max(waits, default=0.0)


def is_retryable(error: BaseException) -> bool:
    """True for provider errors that a later attempt may cure (the error says so)."""
    return isinstance(error, ProviderError) and error.retry_strategy != "none"


@dataclass
class RetryPolicy:
    """How often and how long to retry a failed provider call.

    ``num_retries`` counts retries after the first attempt. The n-th backoff is drawn
    uniformly from ``[0, min(max_delay, base_delay * 2**n)]`` ("full jitter"); when the
    error carries a ``retry_after`` (from the server's Retry-After header) that wait is
    used instead, capped by ``max_retry_after`` so a confused server cannot park us;
    without one, a spent rate-limit budget's reset is the shortest wait (same cap).
    """

    num_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0
    rng: random.Random = field(default_factory=lambda: _SHARED_RNG, repr=False)
    on_retry: RetryCallback | None = field(default=None, repr=False)

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether to try again after ``error`` on the 0-based ``attempt``."""
        return attempt < self.num_retries and is_retryable(error)

    def delay(self, error: BaseException, attempt: int) -> float:
        """Seconds to wait before the retry that follows ``attempt``."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        backoff = self.rng.uniform(0.0, ceiling)
        return max(backoff, min(budget_reset(error), self.max_retry_after))

    def _next_delay(self, error: DspyqError, attempt: int) -> float:
        wait = self.delay(error, attempt)
        error.context["attempts"] = attempt + 1
        logger.info(
            "retrying after %s (attempt %d of %d) in %.2fs",
            type(error).__name__,
            attempt + 1,
            self.num_retries + 1,
            wait,
        )
        if self.on_retry is not None:
            self.on_retry(error, attempt, wait)
        return wait

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` until it succeeds, a non-retryable error occurs, or retries run out."""
        attempt = 0
        while True:
            try:
                return fn()
            except DspyqError as error:
                if not self.should_retry(error, attempt):
                    error.context.setdefault("attempts", attempt + 1)
                    raise
                time.sleep(self._next_delay(error, attempt))
                attempt += 1

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Async twin of :meth:`call`; waits with ``asyncio.sleep``."""
        attempt = 0
        while True:
            try:
                return await fn()
            except DspyqError as error:
                if not self.should_retry(error, attempt):
                    error.context.setdefault("attempts", attempt + 1)
                    raise
                await asyncio.sleep(self._next_delay(error, attempt))
                attempt += 1

    def iterate(self, open_stream: Callable[[], Iterator[T]]) -> Iterator[T]:
        """Yield from a stream, retrying only while nothing has been yielded yet.

        Once a chunk has reached the caller a retry would duplicate text, so a
        failure after that point is raised as it is.
        """
        attempt = 0
        while True:
            started = False
            try:
                for item in open_stream():
                    started = True
                    yield item
                return
            except DspyqError as error:
                if started or not self.should_retry(error, attempt):
                    error.context.setdefault("attempts", attempt + 1)
                    raise
                time.sleep(self._next_delay(error, attempt))
                attempt += 1

    async def aiterate(self, open_stream: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Async twin of :meth:`iterate`."""
        attempt = 0
        while True:
            started = False
            try:
                async for item in open_stream():
                    started = True
                    yield item
                return
            except DspyqError as error:
                if started or not self.should_retry(error, attempt):
                    error.context.setdefault("attempts", attempt + 1)
                    raise
                await asyncio.sleep(self._next_delay(error, attempt))
                attempt += 1
