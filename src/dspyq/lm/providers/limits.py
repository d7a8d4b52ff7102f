"""What the provider's rate-limit headers say, and the wait they ask for before the next call.

OpenAI sends ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (resets as
durations such as ``20ms``, ``1.5s`` or ``6m0s``) and ``x-request-id``; Anthropic sends
``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` (resets as RFC 3339
times) and ``request-id``. When a budget is spent (remaining 0), the next request would
only earn a 429, so the provider notes the reset time and the next call, or retry,
through the same provider waits for it (process-wide, capped by ``MAX_BUDGET_WAIT``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from dspyq.lm.providers.base import ProviderConfig

# A budget wait longer than this is not taken: the caller's own retry policy and the
# shared rate limiter are better judges of a wait that long.
MAX_BUDGET_WAIT = 60.0

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Seconds from OpenAI's reset durations (``20ms``, ``1.5s``, ``6m0s``, or plain seconds)."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _UNIT[unit] for number, unit in parts)


def _until(text: str, now: datetime | None = None) -> float | None:
    """Seconds from now until an RFC 3339 time (Anthropic's resets)."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RateLimitInfo:
    """One answer's rate-limit headers; resets in seconds from when it was read."""

    request_id: str | None = None
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None

    def wait(self) -> float:
        """Seconds until a spent budget (remaining 0) resets; 0 when none is spent."""
        waits = [
            reset or 0.0
            for remaining, reset in (
                (self.remaining_requests, self.reset_requests),
                (self.remaining_tokens, self.reset_tokens),
            )
            if remaining == 0
        ]
        return max(waits, default=0.0)

    def as_dict(self) -> dict[str, object]:
        # Flat fields: no need for asdict's recursive copy, read on every answer.
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if value is not None}

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def read_rate_limits(headers: Mapping[str, str]) -> RateLimitInfo:
    """The rate-limit headers of either provider (absent ones stay None)."""
    get = headers.get
    if get("anthropic-ratelimit-requests-remaining") or get("anthropic-ratelimit-tokens-remaining"):
        prefix = "anthropic-ratelimit-"
        reset_r, reset_t = get(prefix + "requests-reset"), get(prefix + "tokens-reset")
        return RateLimitInfo(
            request_id=get("request-id") or get("x-request-id"),
            limit_requests=_int(get(prefix + "requests-limit")),
            remaining_requests=_int(get(prefix + "requests-remaining")),
            reset_requests=_until(reset_r) if reset_r else None,
            limit_tokens=_int(get(prefix + "tokens-limit")),
            remaining_tokens=_int(get(prefix + "tokens-remaining")),
            reset_tokens=_until(reset_t) if reset_t else None,
        )
    reset_r, reset_t = get("x-ratelimit-reset-requests"), get("x-ratelimit-reset-tokens")
    return RateLimitInfo(
        request_id=get("x-request-id") or get("request-id"),
        limit_requests=_int(get("x-ratelimit-limit-requests")),
        remaining_requests=_int(get("x-ratelimit-remaining-requests")),
        reset_requests=parse_duration(reset_r) if reset_r else None,
        limit_tokens=_int(get("x-ratelimit-limit-tokens")),
        remaining_tokens=_int(get("x-ratelimit-remaining-tokens")),
        reset_tokens=parse_duration(reset_t) if reset_t else None,
    )


# Per provider endpoint: the monotonic time before which a request would be refused.
_spent_until: dict[tuple[str, str], float] = {}
_lock = threading.Lock()


def _key(config: ProviderConfig) -> tuple[str, str]:
    return config.name, config.api_base


def note_budget(config: ProviderConfig, info: RateLimitInfo) -> None:
    """Remember a spent budget (or forget one that has been refilled)."""
    wait = min(info.wait(), MAX_BUDGET_WAIT)
    with _lock:
        if wait > 0:
            _spent_until[_key(config)] = time.monotonic() + wait
        elif info.remaining_requests or info.remaining_tokens:
            _spent_until.pop(_key(config), None)


def budget_wait(config: ProviderConfig) -> float:
    """Seconds to wait before the next request to this provider (0 if its budget is left)."""
    with _lock:
        until = _spent_until.get(_key(config))
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            _spent_until.pop(_key(config), None)
        return max(0.0, left)


def forget_budgets() -> None:
    """Forget every noted spent budget (a fresh test server may reuse an old port)."""
    with _lock:
        _spent_until.clear()
