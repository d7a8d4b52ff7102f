"""What an LM keeps of each finished call: the cache entry, the history entry and the
``lm_request`` event (:mod:`dspyq.lm.observe`), with the call's cost from the prices.

Kept apart from the facade so that one place says what a call leaves behind, whichever
way it was made (plain, async, streamed, answered from the cache or stale).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dspyq.lm import history as global_history
from dspyq.lm.cache import default_cache
from dspyq.lm.call import PreparedCall
from dspyq.lm.observe import report_lm_request
from dspyq.lm.pricing import Price, PriceTable, price_table
from dspyq.lm.request import LMResponse, Usage
from dspyq.lm.truncation import warn_if_truncated
from dspyq.lm.usage import record_usage

__all__ = ["CallRecorder", "lm_price_table"]

logger = logging.getLogger("dspyq.lm")

# Models already logged as unpriced, so the note is made once per process, not per call.
_unpriced_noted: set[str] = set()
_unpriced_lock = threading.Lock()


def lm_price_table(model: str, prices: Any) -> PriceTable:
    """The prices an LM counts with: the process-wide table, overridden by ``prices``
    (a :class:`Price`, an ``(input, output)`` pair for ``model``, or model -> price)."""
    if prices is None:
        return price_table()
    per_model = isinstance(prices, Mapping) and not (
        {"input", "output", "input_per_million", "output_per_million"} & set(prices)
    )
    if per_model:
        return PriceTable(prices, fallback=price_table())
    return PriceTable({model: Price.coerce(prices)}, fallback=price_table())


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


@dataclass(frozen=True)
class CallRecorder:
    """Records the calls of one LM (its model, provider and prices)."""

    model: str
    provider_name: str
    model_type: str
    prices: PriceTable

    def cost(self, response: LMResponse) -> tuple[float, bool]:
        """The response's cost in USD, and whether the model's price is known."""
        price = self.prices.lookup(self.model)
        if price is None:
            with _unpriced_lock:
                first = self.model not in _unpriced_noted
                _unpriced_noted.add(self.model)
            if first:
                logger.info("no price known for %s; its calls are counted at $0", self.model)
            return 0.0, False
        return price.cost(response.usage), True

    def answered(
        self,
        history: list[dict[str, Any]],
        history_lock: threading.Lock,
        call: PreparedCall,
        response: LMResponse,
        started: float,
        *,
        cache_hit: bool,
        stream: bool = False,
        stale: bool = False,
    ) -> None:
        """Record an answered call: cache it (if fresh), append it to ``history`` and the
        global history, and report it."""
        if cache_hit:
            usage, cost, priced = Usage(), 0.0, True
        else:
            usage = response.usage
            cost, priced = self.cost(response)
            warn_if_truncated(response, call.request.params)
            if call.key is not None:
                default_cache().put(call.key, response)
            record_usage(self.model, usage.model_dump())  # a cache hit costs nothing, as in DSPy
        entry: dict[str, Any] = {
            "prompt": call.prompt,
            "messages": call.request.messages,
            "kwargs": call.history_kwargs,
            "outputs": list(response.outputs),
            "usage": usage.model_dump(),
            "cost": cost,
            "cost_known": priced,
            "duration_ms": _elapsed_ms(started),
            "cache_hit": cache_hit,
            "stream": stream,
            "stale": stale,
            "model": self.model,
            "response_model": response.model,
            "provider": self.provider_name,
            "model_type": self.model_type,
            "finish_reasons": list(response.finish_reasons),
            "rate_limit": None if cache_hit else response.rate_limit,
            "timestamp": datetime.now().isoformat(),  # DSPy's: local time, as inspect_history shows it
            "uuid": uuid.uuid4().hex,
        }
        with history_lock:
            history.append(entry)
            overflow = len(history) - global_history.MAX_HISTORY
            if overflow > 0:
                del history[:overflow]
        global_history.record(entry)
        self._report(call, usage, cost, entry, cache_hit=cache_hit, stream=stream)

    def failed(
        self, call: PreparedCall, started: float, error: Exception, *, stream: bool = False
    ) -> None:
        """Report a failed attempt or call (it has no history entry)."""
        entry = {"uuid": uuid.uuid4().hex, "duration_ms": _elapsed_ms(started)}
        self._report(call, Usage(), 0.0, entry, cache_hit=False, stream=stream, error=error)

    def _report(
        self, call: PreparedCall, usage: Usage, cost: float, entry: dict[str, Any], **outcome: Any
    ) -> None:
        report_lm_request(
            request_id=entry["uuid"],
            provider=self.provider_name,
            model=self.model,
            messages=call.request.messages,
            usage=usage,
            cost_usd=cost,
            duration_ms=entry["duration_ms"],
            **outcome,
        )
