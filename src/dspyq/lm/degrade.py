"""Graceful degradation: a stale cached answer when the provider is unavailable.

With ``degradation.stale_cache`` on, an LM call whose provider is down (its breaker
open, or still failing with 5xx / timeouts / connection errors after the retries) is
answered from the cache even past the answer's TTL, as long as it expired less than
``degradation.stale_grace`` seconds ago. The answer is marked ``stale`` in the LM
history and reported as a ``degraded_response`` event; a worker marks the job's result
stale too. A job that still has fallback LMs to try sets ``allow_stale=False`` in the
runtime context: another provider's fresh answer beats a stale one.

Which layers can serve stale answers: the in-process LRU (expired entries are kept until
evicted) and the SQL layer (expired rows stay until purged). Redis drops an entry at
its TTL, so L2 cannot.
"""

from __future__ import annotations

import logging
from typing import Any

from dspyq.core import observe
from dspyq.core.context import current
from dspyq.errors import CircuitOpenError, ProviderError
from dspyq.lm.request import LMResponse
from dspyq.settings import get_settings

__all__ = ["DEGRADED_RESPONSE", "is_unavailable", "stale_answer"]

logger = logging.getLogger(__name__)

DEGRADED_RESPONSE = "degraded_response"
"""Event of an LM call answered from a stale cache entry (data: provider, model, reason)."""

_ERROR_CHARS = 300


def is_unavailable(error: BaseException) -> bool:
    """An open breaker, or a provider error a later attempt might have cured (5xx, 429, down)."""
    if isinstance(error, CircuitOpenError):
        return True
    return isinstance(error, ProviderError) and error.retry_strategy in {"backoff", "after"}


def stale_answer(
    cache: Any, key: str | None, error: BaseException, *, provider: str, model: str
) -> LMResponse | None:
    """A stale answer for ``key`` if degradation allows one here, else None.

    Emits ``degraded_response`` when it returns one. Never raises: a failing cache
    lookup only means the original error stands.
    """
    conf = get_settings().degradation
    if not conf.stale_cache or key is None or not is_unavailable(error):
        return None
    if current().get("allow_stale", True) is False:
        return None
    reader = getattr(cache, "get_stale", None)
    if reader is None:
        return None
    try:
        answer: LMResponse | None = reader(key, conf.stale_grace)
    except Exception:
        logger.warning("stale cache lookup failed; the provider's error stands", exc_info=True)
        return None
    if answer is None:
        return None
    logger.warning("%s unavailable (%s): answered from a stale cache entry", model, error)
    observe.emit(
        DEGRADED_RESPONSE,
        {
            "provider": provider,
            "model": model,
            "reason": type(error).__name__,
            "error": str(error)[:_ERROR_CHARS],
        },
    )
    return answer
